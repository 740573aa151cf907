//! OAuth for upstream HTTP servers: MCP authorization as a client, through rmcp's `auth`
//! support, which speaks the protocol (protected-resource and authorization-server metadata
//! discovery, dynamic client registration, client ID metadata documents, PKCE with S256, the
//! `resource` parameter, refresh, the client-credentials grant). This module decides when each
//! step runs and keeps the tokens.
//!
//! Tokens are kept in `<state dir>/oauth/<namespace>.json`, mode 0600, written atomically and
//! tied to the server's URL: a file written for another URL is not used, so a changed `url`
//! never receives the old server's token. They go only into the `Authorization` header of
//! requests to that server; never into the sandbox, logs, errors, stats or spans.
//!
//! - `authorization_code` (the default): [`login`] runs the browser flow once. It receives the
//!   code on a loopback redirect (`http://127.0.0.1:PORT/callback`). Connections then use the
//!   stored token, refresh it when it expires, and refresh once more when the server rejects
//!   it. A connection with no usable token fails with a message naming `codemode auth login`.
//! - `client_credentials`: the token is requested on connecting and again before a call once
//!   it has expired; there is no browser and nothing to log in to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::TokenResponse;
use rmcp::transport::auth::{AuthorizationCallback, AuthorizationMetadata};
use rmcp::transport::{
    AuthClient, AuthError, AuthorizationManager, AuthorizationRequest, AuthorizationSession,
    ClientCredentialsConfig, CredentialStore, StoredCredentials,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::client::{Transport, UpstreamConfig, UpstreamError};
use super::listing::TappedHttp;
use super::shapes::write_atomically;
use crate::error::ToolError;

/// How codemode obtains a token for an upstream HTTP server (`[servers.oauth]`). The secret is
/// already resolved; `Debug` does not show it.
#[derive(Clone, Default, PartialEq)]
pub struct OAuthConfig {
    /// A client registered with the authorization server beforehand; `None` registers one
    /// dynamically (or uses `client_metadata_url`).
    pub client_id: Option<String>,
    /// The secret of a confidential pre-registered client.
    pub client_secret: Option<String>,
    /// The grant.
    pub grant: Grant,
    /// Scopes to ask for; empty lets the server's challenge and metadata decide.
    pub scopes: Vec<String>,
    /// The HTTPS URL of this client's metadata document, used as its client ID where the
    /// authorization server supports them.
    pub client_metadata_url: Option<String>,
    /// The loopback port of the redirect; 0 picks a free one. A pre-registered client whose
    /// redirect URI names a port needs it.
    pub redirect_port: u16,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("grant", &self.grant)
            .field("scopes", &self.scopes)
            .field("client_metadata_url", &self.client_metadata_url)
            .field("redirect_port", &self.redirect_port)
            .finish()
    }
}

/// An OAuth grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A person signs in through a browser (`codemode auth login`).
    #[default]
    AuthorizationCode,
    /// A machine client authenticates with its own ID and secret.
    ClientCredentials,
}

/// What [`login`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Login {
    /// The client ID the token was issued to.
    pub client_id: String,
    /// How the client was identified: `configured`, `metadata_document` or `dynamic`.
    pub registration: &'static str,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// Where the token is kept.
    pub file: PathBuf,
}

/// What is known about a server's token; never the token itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenStatus {
    /// The server's namespace.
    pub namespace: String,
    /// Its grant.
    pub grant: Grant,
    /// Where its token is kept (`None` without a state directory).
    pub file: Option<PathBuf>,
    /// A token is stored for the server's URL.
    pub signed_in: bool,
    /// The client the token belongs to.
    pub client_id: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// Seconds until the access token expires (negative once expired), when the server said.
    pub expires_in_s: Option<i64>,
    /// It can be refreshed without signing in again.
    pub refreshable: bool,
    /// Scopes the server refused a request for lack of; the next login asks for them.
    pub wanted_scopes: Vec<String>,
}

/// How long [`login`] waits for the browser to come back, unless told otherwise.
pub const LOGIN_WAIT: Duration = Duration::from_secs(300);

/// Runs the authorization-code flow for `config`'s server and stores the token: discovers the
/// metadata from the server's challenge, identifies the client (the configured one, a client
/// ID metadata document, or dynamic registration), calls `open` with the authorization URL,
/// and waits up to `wait` for the redirect. For a `client_credentials` server it requests a
/// token instead, which proves the credentials.
pub async fn login(
    config: &UpstreamConfig,
    open: impl FnOnce(&str) -> Result<(), String>,
    wait: Duration,
) -> Result<Login, UpstreamError> {
    let (url, headers, oauth) = oauth_of(config)?;
    let store = TokenStore::open(config, url);
    let Some(file) = store.path.clone() else {
        return Err(config.error("there is no state directory to keep its token in".into()));
    };
    let fail = |e: AuthError| config.error(describe(&e));
    let mut manager = AuthorizationManager::new(url).await.map_err(fail)?;
    manager.set_credential_store(store.clone());
    if oauth.grant == Grant::ClientCredentials {
        let credentials = client_credentials(config, url, oauth)?;
        let resolution = manager.resolve_metadata().await.map_err(fail)?;
        manager.set_metadata(resolution.metadata);
        manager.configure_client_credentials(&credentials).map_err(fail)?;
        let token = manager.exchange_client_credentials(&credentials).await.map_err(fail)?;
        return Ok(Login {
            client_id: oauth.client_id.clone().unwrap_or_default(),
            registration: "configured",
            scopes: granted(&token),
            file,
        });
    }
    // The server's 401 says where its metadata is and which scopes it wants.
    let challenge = challenge(url, headers).await;
    let resolution = manager.resolve_metadata_from_challenge(challenge.as_deref()).await.map_err(fail)?;
    let metadata_documents = supports_metadata_documents(&resolution.metadata);
    manager.set_metadata(resolution.metadata);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", oauth.redirect_port))
        .await
        .map_err(|e| config.error(format!("cannot listen for the redirect on 127.0.0.1: {e}")))?;
    let port = listener.local_addr().map_err(|e| config.error(e.to_string()))?.port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let mut scopes =
        if oauth.scopes.is_empty() { manager.select_initial_scopes(&[]).await } else { oauth.scopes.clone() };
    // Signing in again (to step up) keeps what was granted and adds what the server asked for.
    if let Ok(Some(previous)) = store.read() {
        for scope in previous.credentials.granted_scopes.into_iter().chain(previous.wanted_scopes) {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    let mut request =
        AuthorizationRequest::new(&redirect).with_scopes(scopes.clone()).with_client_name("codemode");
    let registration = match (&oauth.client_id, &oauth.client_metadata_url) {
        (Some(id), _) => {
            request = request.with_preregistered_client(id);
            if let Some(secret) = &oauth.client_secret {
                request = request.with_client_secret(secret);
            }
            "configured"
        }
        (None, Some(document)) if metadata_documents => {
            request = request.with_client_metadata_url(document);
            "metadata_document"
        }
        (None, _) => {
            // Registered here rather than inside rmcp's session so that a secret the server
            // issues is kept beside the token: refreshes after a restart need it.
            let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let registered = manager.register_client("codemode", &redirect, &refs).await.map_err(fail)?;
            store.set_client_secret(registered.client_secret.clone());
            request = request.with_preregistered_client(&registered.client_id);
            if let Some(secret) = &registered.client_secret {
                request = request.with_client_secret(secret);
            }
            "dynamic"
        }
    };
    let session = AuthorizationSession::new(manager, request).await.map_err(|(_, e)| fail(e))?;
    let callback = receive_redirect(listener, port, session.get_authorization_url(), open, wait)
        .await
        .map_err(|e| config.error(e))?;
    let token = session.handle_callback_url(&callback).await.map_err(fail)?;
    let (client_id, _) = session.get_credentials().await.map_err(fail)?;
    Ok(Login { client_id, registration, scopes: granted(&token), file })
}

/// What is stored for `config`'s server. A token file that cannot be read is an error naming it.
pub fn token_status(config: &UpstreamConfig) -> Result<TokenStatus, UpstreamError> {
    let (url, _, oauth) = oauth_of(config)?;
    let store = TokenStore::open(config, url);
    let file = store.read().map_err(|e| config.error(e))?;
    let wanted_scopes = file.as_ref().map(|f| f.wanted_scopes.clone()).unwrap_or_default();
    let stored = file.map(|file| file.credentials);
    let token = stored.as_ref().and_then(|c| c.token_response.as_ref());
    let expires_in_s = stored.as_ref().and_then(|c| {
        let lifetime = c.token_response.as_ref()?.expires_in()?.as_secs() as i64;
        Some(c.token_received_at? as i64 + lifetime - now() as i64)
    });
    Ok(TokenStatus {
        namespace: config.namespace.clone(),
        grant: oauth.grant,
        file: store.path.clone(),
        signed_in: token.is_some(),
        client_id: stored.as_ref().map(|c| c.client_id.clone()),
        scopes: stored.as_ref().map(|c| c.granted_scopes.clone()).unwrap_or_default(),
        expires_in_s,
        refreshable: token.is_some_and(|t| t.refresh_token().is_some()),
        wanted_scopes,
    })
}

/// Whether connecting to `config`'s server needs [`login`] first: an authorization-code server
/// with no token, with an expired one that cannot be refreshed, or lacking a scope the server
/// asked for.
pub fn needs_login(config: &UpstreamConfig) -> bool {
    match token_status(config) {
        Ok(status) => {
            status.grant == Grant::AuthorizationCode
                && (!status.signed_in
                    || (status.expires_in_s.is_some_and(|s| s <= 0) && !status.refreshable)
                    || !status.wanted_scopes.is_empty())
        }
        // Connecting says what is wrong with the file.
        Err(_) => false,
    }
}

/// Remembers that the server refused a request for lack of `scope`, for the next [`login`];
/// returns the message that says what to do.
pub(crate) fn want_scope(config: &UpstreamConfig, scope: &str) -> String {
    let advice = format!(
        "the server needs the scope {scope:?} for this: run `codemode auth login {}` to grant it",
        config.namespace
    );
    let Ok((url, _, _)) = oauth_of(config) else { return advice };
    let store = TokenStore::open(config, url);
    let Ok(Some(mut file)) = store.read() else { return advice };
    if !file.wanted_scopes.iter().any(|s| s == scope) {
        file.wanted_scopes.push(scope.to_string());
        if let Err(e) = store.write(&file) {
            tracing::warn!(upstream = %config.namespace, error = %e, "the wanted scope is not remembered");
        }
    }
    advice
}

/// Forgets `config`'s token: removes its file, if there is one. Returns whether there was.
pub fn logout(config: &UpstreamConfig) -> Result<bool, UpstreamError> {
    let (url, _, _) = oauth_of(config)?;
    let store = TokenStore::open(config, url);
    let Some(path) = &store.path else { return Ok(false) };
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(config.error(format!("cannot remove {}: {e}", path.display()))),
    }
}

/// The HTTP client of a connection to an OAuth server: rmcp's, which adds the token to every
/// request, refreshes it when it expires and once more when the server rejects it. Fails, with
/// the command to run, when there is no usable token.
pub(crate) async fn authorized_http(
    config: &UpstreamConfig,
    url: &str,
    oauth: &OAuthConfig,
    inner: TappedHttp,
) -> Result<(AuthClient<TappedHttp>, Option<Renewal>), UpstreamError> {
    let store = TokenStore::open(config, url);
    let fail = |e: AuthError| config.error(describe(&e));
    let mut manager = AuthorizationManager::new(url).await.map_err(fail)?;
    manager.set_credential_store(store.clone());
    let mut renewal = None;
    match oauth.grant {
        Grant::AuthorizationCode => {
            store.read().map_err(|e| config.error(e))?;
            if !manager.initialize_from_store().await.map_err(fail)? {
                return Err(config.needs_login());
            }
            // A confidential client signs its refreshes with its secret: the configured one,
            // or the one registration issued.
            if let Some(secret) = oauth.client_secret.clone().or_else(|| store.client_secret()) {
                let (client_id, _) = manager.get_credentials().await.map_err(fail)?;
                let client =
                    rmcp::transport::auth::OAuthClientConfig::new(client_id, url).with_client_secret(secret);
                manager.configure_client(client).map_err(fail)?;
            }
            match manager.get_access_token().await {
                Err(AuthError::AuthorizationRequired) => return Err(config.needs_login()),
                Err(e) => return Err(fail(e)),
                Ok(_) => {}
            }
        }
        Grant::ClientCredentials => {
            let credentials = client_credentials(config, url, oauth)?;
            let resolution = manager.resolve_metadata().await.map_err(fail)?;
            manager.set_metadata(resolution.metadata);
            manager.configure_client_credentials(&credentials).map_err(fail)?;
            renewal = Some(credentials);
        }
    }
    let client = AuthClient::new(inner, manager);
    let renewal =
        renewal.map(|credentials| Renewal { manager: Arc::clone(&client.auth_manager), credentials });
    if let Some(renewal) = &renewal {
        renewal.ensure().await.map_err(|e| config.error(e.message))?;
    }
    Ok((client, renewal))
}

/// A client-credentials token kept fresh: requested again before a call once it has expired
/// (there is no refresh token in this grant, and rmcp would send the request without one).
pub(crate) struct Renewal {
    manager: Arc<Mutex<AuthorizationManager>>,
    credentials: ClientCredentialsConfig,
}

impl Renewal {
    pub(crate) async fn ensure(&self) -> Result<(), ToolError> {
        let manager = self.manager.lock().await;
        let renewed = match manager.get_access_token().await {
            Err(AuthError::AuthorizationRequired) => {
                manager.exchange_client_credentials(&self.credentials).await.map(drop)
            }
            other => other.map(drop),
        };
        renewed.map_err(|e| ToolError::with_code("upstream_unauthorized", describe(&e)))
    }
}

fn oauth_of(
    config: &UpstreamConfig,
) -> Result<(&str, &BTreeMap<String, String>, &OAuthConfig), UpstreamError> {
    match &config.transport {
        Transport::Http { url, headers, oauth: Some(oauth) } => Ok((url, headers, oauth)),
        _ => Err(config.error("it has no `[servers.oauth]` table".into())),
    }
}

fn client_credentials(
    config: &UpstreamConfig,
    url: &str,
    oauth: &OAuthConfig,
) -> Result<ClientCredentialsConfig, UpstreamError> {
    let (Some(client_id), Some(client_secret)) = (&oauth.client_id, &oauth.client_secret) else {
        return Err(config.error("the client_credentials grant needs `client_id` and `client_secret`".into()));
    };
    Ok(ClientCredentialsConfig::ClientSecret {
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        scopes: oauth.scopes.clone(),
        resource: Some(url.to_string()),
    })
}

fn supports_metadata_documents(metadata: &AuthorizationMetadata) -> bool {
    metadata.additional_fields.get("client_id_metadata_document_supported").and_then(|v| v.as_bool())
        == Some(true)
}

fn granted(token: &rmcp::transport::auth::OAuthTokenResponse) -> Vec<String> {
    token.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()).unwrap_or_default()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// rmcp's error, which may quote a server's response but never holds a token or secret.
fn describe(e: &AuthError) -> String {
    match e {
        AuthError::AuthorizationRequired => "it needs authorization".into(),
        e => format!("authorization failed: {e}"),
    }
}

/// The server's challenge to a client with no token: the `WWW-Authenticate` header of its 401
/// (or 403) to an unauthenticated `initialize`, or, when a server lets anyone initialize, to the
/// `tools/list` after it.
async fn challenge(url: &str, headers: &BTreeMap<String, String>) -> Option<String> {
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let refusal = |response: &reqwest::Response| {
        let status = response.status();
        (status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN)
            .then(|| response.headers().get("www-authenticate")?.to_str().ok().map(String::from))
            .flatten()
    };
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": rmcp::model::ProtocolVersion::V_2025_11_25,
            "capabilities": {},
            "clientInfo": { "name": "codemode", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    let response = post(initialize, None).await.ok()?;
    if let Some(challenge) = refusal(&response) {
        return Some(challenge);
    }
    if !response.status().is_success() {
        return None;
    }
    let session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(String::from);
    drop(response);
    let initialized = serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    post(initialized, session.as_deref()).await.ok()?;
    let list = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" });
    refusal(&post(list, session.as_deref()).await.ok()?)
}

/// Serves the redirect on `listener`, opens `url`, and returns the redirect's URL once the
/// browser comes back with a code (or says why it did not).
async fn receive_redirect(
    listener: tokio::net::TcpListener,
    port: u16,
    url: &str,
    open: impl FnOnce(&str) -> Result<(), String>,
    wait: Duration,
) -> Result<String, String> {
    use axum::response::Html;
    let (sender, received) = tokio::sync::oneshot::channel::<Result<String, String>>();
    let sender = Arc::new(StdMutex::new(Some(sender)));
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(move |uri: axum::http::Uri| async move {
            let full = format!("http://127.0.0.1:{port}{uri}");
            let outcome = match AuthorizationCallback::from_redirect_url(&full) {
                Ok(_) => Ok(full),
                Err(_) => Err(refusal(&full)),
            };
            let page = match &outcome {
                Ok(_) => "codemode: signed in. You can close this tab.".to_string(),
                Err(why) => format!("codemode: {}", html_escape(why)),
            };
            if let Some(sender) = sender.lock().expect("redirect lock").take() {
                let _ = sender.send(outcome);
            }
            Html(format!("<!doctype html><title>codemode</title><p>{page}</p>"))
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    let result = match open(url) {
        Err(e) => Err(e),
        Ok(()) => match tokio::time::timeout(wait, received).await {
            Err(_) => Err(format!("no redirect came back within {} s", wait.as_secs())),
            Ok(Err(_)) => Err("the redirect listener stopped".into()),
            Ok(Ok(outcome)) => outcome,
        },
    };
    let _ = stop.send(());
    let _ = server.await;
    result
}

/// Why a redirect carries no code: the authorization server's `error` and description.
fn refusal(redirect: &str) -> String {
    let query = redirect.split_once('?').map_or("", |(_, q)| q);
    let field = |name: &str| url_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v);
    match field("error") {
        Some(error) => match field("error_description") {
            Some(description) => format!("the authorization server refused: {error}: {description}"),
            None => format!("the authorization server refused: {error}"),
        },
        None => "the redirect carried no code and state".into(),
    }
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The token file's contents.
#[derive(Serialize, Deserialize)]
struct TokenFile {
    /// The server the token is for.
    url: String,
    /// A secret that dynamic registration issued, for refreshes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    /// Scopes the server refused a request for lack of (403 `insufficient_scope`), which the
    /// next login asks for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    wanted_scopes: Vec<String>,
    credentials: StoredCredentials,
}

/// rmcp's credential store, backed by the token file (or by memory without a state directory).
#[derive(Clone)]
struct TokenStore(Arc<Store>);

struct Store {
    path: Option<PathBuf>,
    url: String,
    /// What was last read or written; `None` until the file is first read.
    cached: StdMutex<Option<Option<TokenFile>>>,
    /// A secret from dynamic registration, saved with the token.
    client_secret: StdMutex<Option<String>>,
}

impl std::ops::Deref for TokenStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl TokenStore {
    fn open(config: &UpstreamConfig, url: &str) -> TokenStore {
        let path = config.state_file("oauth", "json");
        TokenStore(Arc::new(Store {
            path,
            url: url.to_string(),
            cached: StdMutex::new(None),
            client_secret: StdMutex::new(None),
        }))
    }

    /// The file's contents for this URL (`None` for no file, or one for another URL).
    fn read(&self) -> Result<Option<TokenFile>, String> {
        let Some(path) = &self.path else { return Ok(None) };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read its token file {}: {e}", path.display())),
        };
        let file: TokenFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "its token file {} is not valid ({e}); `codemode auth login` writes a new one",
                path.display()
            )
        })?;
        Ok((file.url == self.url).then_some(file))
    }

    /// Writes `file` as the token file (mode 0600, atomically); nothing without a state directory.
    fn write(&self, file: &TokenFile) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let text = serde_json::to_string_pretty(file).map_err(|e| e.to_string())?;
        write_atomically(path, text.as_bytes(), true)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn load_cached(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let mut cached = self.cached.lock().expect("token cache lock");
        if cached.is_none() {
            let file = self.read().map_err(AuthError::CredentialStoreError)?;
            if let Some(secret) = file.as_ref().and_then(|f| f.client_secret.clone()) {
                self.client_secret.lock().expect("secret lock").get_or_insert(secret);
            }
            *cached = Some(file);
        }
        Ok(cached.as_ref().and_then(|f| f.as_ref()).map(|f| f.credentials.clone()))
    }

    fn client_secret(&self) -> Option<String> {
        let _ = self.load_cached();
        self.client_secret.lock().expect("secret lock").clone()
    }

    fn set_client_secret(&self, secret: Option<String>) {
        *self.client_secret.lock().expect("secret lock") = secret;
    }
}

#[async_trait::async_trait]
impl CredentialStore for TokenStore {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        self.load_cached()
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        // Read afresh: a refused request may have added a wanted scope since the cache was filled.
        let mut wanted_scopes = self.read().ok().flatten().map(|f| f.wanted_scopes).unwrap_or_default();
        wanted_scopes.retain(|s| !credentials.granted_scopes.contains(s));
        let file = TokenFile {
            url: self.url.clone(),
            client_secret: self.client_secret.lock().expect("secret lock").clone(),
            wanted_scopes,
            credentials,
        };
        self.write(&file).map_err(AuthError::CredentialStoreError)?;
        *self.cached.lock().expect("token cache lock") = Some(Some(file));
        Ok(())
    }

    async fn clear(&self) -> Result<(), AuthError> {
        if let Some(path) = &self.path {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(AuthError::CredentialStoreError(format!(
                        "cannot remove {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        *self.cached.lock().expect("token cache lock") = Some(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_redirect_says_what_the_server_said() {
        assert_eq!(
            refusal("http://127.0.0.1:1/callback?error=access_denied&error_description=The+user+said+no"),
            "the authorization server refused: access_denied: The user said no"
        );
        assert_eq!(refusal("http://127.0.0.1:1/callback"), "the redirect carried no code and state");
    }
}
