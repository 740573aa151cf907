//! MCP through the `rmcp` crate, both ways: codemode as a server agents use (search tools, read
//! their declarations, execute code), and upstream MCP servers as tool sources.

mod client;
mod listing;
mod oauth;
mod server;
mod sessions;
pub(crate) mod shapes;
mod stdio;

pub use client::{ClientFeatures, Transport, Upstream, UpstreamConfig, UpstreamError, UpstreamStatus};
pub use oauth::{
    login, logout, needs_login, token_status, Grant, Login, OAuthConfig, TokenStatus, LOGIN_WAIT,
};
pub use server::{McpConfig, McpServer};
pub use sessions::SessionStats;
