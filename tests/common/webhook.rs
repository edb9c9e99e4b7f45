//! A fake Discord webhook endpoint: checks every request against [`super::discord_rules`],
//! records what arrived, and answers as scripted.

use super::discord_rules::check_discord_payload;
use super::env::{lock, wait_until};
use super::servers::{Handler, ReceivedRequest, Reply, ServerCore};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The titles of the embeds of Discord payloads `msgs`, in order.
pub fn embed_titles(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
        .map(|e| e["title"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Path part of [`WebhookReceiver::url`]; id and token are fake but Discord-shaped.
pub const WEBHOOK_PATH: &str = "/api/webhooks/123456/secret-token-abc";

/// A scripted answer: (status, headers, body).
pub type ScriptedResponse = (u16, Vec<(String, String)>, String);

/// One request as seen by [`WebhookReceiver`].
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    pub at: Instant,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What we answered; None while hanging.
    pub status: Option<u16>,
}

impl WebhookRequest {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Default)]
struct WebhookState {
    queue: VecDeque<ScriptedResponse>,
    hang: bool,
    messages: Vec<(Instant, Value)>,
    violations: Vec<String>,
    requests: Vec<WebhookRequest>,
}

/// A fake Discord webhook endpoint that checks every request the way Discord would, plus our
/// rule that nothing may ping anyone. Invalid requests get 400 with Discord's error shape and
/// are recorded in [`WebhookReceiver::violations`]; valid ones get the next scripted response
/// (default 204) and, when that response is 2xx, are recorded in
/// [`WebhookReceiver::messages`]. Stops on drop.
pub struct WebhookReceiver {
    pub port: u16,
    state: Arc<Mutex<WebhookState>>,
    _server: ServerCore,
}

fn validate_webhook_request(req: &ReceivedRequest) -> Result<Value, String> {
    if req.method != "POST" {
        return Err(format!(
            "method {} not allowed: webhooks take POST",
            req.method
        ));
    }
    if !req.path().starts_with("/api/webhooks/") {
        return Err(format!(
            "path {:?} does not start with /api/webhooks/",
            req.path()
        ));
    }
    let content_type = req.header("content-type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(format!(
            "Content-Type {content_type:?} is not application/json"
        ));
    }
    let value: Value = serde_json::from_slice(&req.body).map_err(|e| {
        format!(
            "body is not valid JSON ({e}): {:?}",
            String::from_utf8_lossy(&req.body)
        )
    })?;
    check_discord_payload(&value)?;
    Ok(value)
}

fn webhook_reply(state: &Mutex<WebhookState>, req: &ReceivedRequest) -> Reply {
    let mut st = lock(state);
    st.requests.push(WebhookRequest {
        at: req.at,
        method: req.method.clone(),
        target: req.target.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        status: None,
    });
    if st.hang {
        return Reply::Hang;
    }
    let (status, headers, body) = match validate_webhook_request(req) {
        Err(violation) => {
            let body = json!({ "message": violation, "code": 50035 }).to_string();
            st.violations.push(violation);
            (
                400,
                vec![("Content-Type".to_string(), "application/json".to_string())],
                body,
            )
        }
        Ok(value) => {
            let answer = st
                .queue
                .pop_front()
                .unwrap_or((204, Vec::new(), String::new()));
            if (200..300).contains(&answer.0) {
                st.messages.push((req.at, value));
            }
            answer
        }
    };
    if let Some(last) = st.requests.last_mut() {
        last.status = Some(status);
    }
    Reply::Send {
        status,
        headers,
        body: body.into_bytes(),
        delay: Duration::ZERO,
    }
}

impl WebhookReceiver {
    pub fn start() -> WebhookReceiver {
        let state = Arc::new(Mutex::new(WebhookState::default()));
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: &ReceivedRequest| webhook_reply(&st, req));
        let server = ServerCore::start("webhook", handler);
        WebhookReceiver {
            port: server.port,
            state,
            _server: server,
        }
    }

    /// A Discord-shaped webhook URL pointing at this receiver.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{WEBHOOK_PATH}", self.port)
    }

    /// Queue answers for the next valid requests, in order; afterwards 204 again.
    pub fn respond_with(&self, responses: Vec<ScriptedResponse>) {
        lock(&self.state).queue.extend(responses);
    }

    /// While true, requests are read and recorded but never answered (the connection is held
    /// until the client gives up or the receiver is dropped).
    pub fn set_hang(&self, hang: bool) {
        lock(&self.state).hang = hang;
    }

    /// Valid payloads that were answered 2xx, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        lock(&self.state)
            .messages
            .iter()
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// [`WebhookReceiver::messages`] with their arrival times.
    pub fn messages_with_time(&self) -> Vec<(Instant, Value)> {
        lock(&self.state).messages.clone()
    }

    /// The titles of every embed received so far, in arrival order.
    pub fn titles(&self) -> Vec<String> {
        embed_titles(&self.messages())
    }

    /// One description per rejected request.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// Waits until at least `n` messages arrived (or `timeout`), then returns all of them.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Value> {
        wait_until(timeout, || lock(&self.state).messages.len() >= n);
        self.messages()
    }

    /// Waits until at least `n` requests of any kind arrived; returns the count.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> usize {
        wait_until(timeout, || self.requests_count() >= n);
        self.requests_count()
    }

    /// All requests received (valid, invalid, scripted, hung).
    pub fn requests_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Every request received, with what was answered.
    pub fn requests(&self) -> Vec<WebhookRequest> {
        lock(&self.state).requests.clone()
    }
}
