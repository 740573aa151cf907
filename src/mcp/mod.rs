//! MCP: codemode as a server agents use (search tools, read their declarations, execute code),
//! through the `rmcp` crate.

mod server;

pub use server::McpServer;
