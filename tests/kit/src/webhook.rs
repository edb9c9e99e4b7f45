//! A fake Discord webhook endpoint: checks every request against [`crate::discord`], records
//! what arrived, and answers as scripted.

use crate::discord::check_discord_payload_pinging;
use crate::env::{lock, wait_until};
use crate::servers::{Handler, ReceivedRequest, Reply, ServerCore};
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
    /// Who a message may ping (`mention=` of the destination); none by default.
    mentions: Vec<String>,
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

fn validate_webhook_request(req: &ReceivedRequest, mentions: &[String]) -> Result<Value, String> {
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
    let mentions: Vec<&str> = mentions.iter().map(String::as_str).collect();
    check_discord_payload_pinging(&value, &mentions)?;
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
    let (status, headers, body) = match validate_webhook_request(req, &st.mentions) {
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

    /// A receiver for a destination configured with `mention=MENTIONS` (`role:ID`,
    /// `user:ID`, `here`): a message may ping exactly those, with `allowed_mentions` listing
    /// exactly them, or nobody; anything else is a violation.
    pub fn start_pinging(mentions: &[&str]) -> WebhookReceiver {
        let receiver = WebhookReceiver::start();
        lock(&receiver.state).mentions = mentions.iter().map(|m| m.to_string()).collect();
        receiver
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

    /// The titles of every embed accepted so far (answered 2xx), in arrival order.
    pub fn titles(&self) -> Vec<String> {
        embed_titles(&self.messages())
    }

    /// The titles of every embed of every request received, in arrival order, whatever was
    /// answered: a payload rejected as invalid, refused by a scripted error or never answered
    /// is here too. "Exactly once" checks count these, so a duplicate the receiver turned away
    /// still counts.
    pub fn all_titles(&self) -> Vec<String> {
        let bodies: Vec<Value> = lock(&self.state)
            .requests
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.body).ok())
            .collect();
        embed_titles(&bodies)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discord::tests::valid_payload;
    use crate::{http_request, try_http_request_timeout, RawConnection, Response};
    use std::io::ErrorKind;

    fn post_json(port: u16, path: &str, body: &str) -> Response {
        http_request(
            port,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    }

    #[test]
    fn webhook_accepts_valid_payload() {
        let hook = WebhookReceiver::start();
        assert!(hook
            .url()
            .starts_with(&format!("http://127.0.0.1:{}/api/webhooks/", hook.port)));
        let before = Instant::now();
        let path = hook
            .url()
            .split_once(&format!(":{}", hook.port))
            .unwrap()
            .1
            .to_string();
        let resp = post_json(hook.port, &path, &valid_payload().to_string());
        assert_eq!(resp.status, 204, "body: {}", resp.text());
        assert!(resp.body.is_empty());
        assert_eq!(hook.messages(), vec![valid_payload()]);
        let timed = hook.messages_with_time();
        assert!(timed[0].0 >= before && timed[0].0 <= Instant::now());
        assert!(hook.violations().is_empty());
        assert_eq!(hook.requests_count(), 1);
        assert_eq!(hook.wait_for_messages(1, Duration::from_secs(1)).len(), 1);
    }

    #[test]
    fn webhook_rejects_bad_requests_over_http() {
        let hook = WebhookReceiver::start();
        let body = valid_payload().to_string();
        // (method, path, headers, body, word the violation must contain)
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String, &'a str);
        let cases: Vec<Case> = vec![
            (
                "PUT",
                WEBHOOK_PATH,
                vec![("Content-Type", "application/json")],
                body.clone(),
                "method",
            ),
            (
                "POST",
                "/api/hooks/1/x",
                vec![("Content-Type", "application/json")],
                body.clone(),
                "path",
            ),
            (
                "POST",
                WEBHOOK_PATH,
                vec![("Content-Type", "text/plain")],
                body.clone(),
                "Content-Type",
            ),
            ("POST", WEBHOOK_PATH, vec![], body.clone(), "Content-Type"),
            (
                "POST",
                WEBHOOK_PATH,
                vec![("Content-Type", "application/json")],
                "{".into(),
                "JSON",
            ),
            (
                "POST",
                WEBHOOK_PATH,
                vec![("Content-Type", "application/json")],
                "[1]".into(),
                "object",
            ),
        ];
        for (i, (method, path, headers, body, needle)) in cases.iter().enumerate() {
            let resp = http_request(hook.port, method, path, headers, Some(body.as_bytes()));
            assert_eq!(resp.status, 400, "case {i} ({needle}) should be rejected");
            let err = resp.json();
            assert_eq!(err["code"], 50035);
            assert!(
                err["message"].as_str().unwrap().contains(needle),
                "case {i}: {err}"
            );
            assert_eq!(hook.violations().len(), i + 1);
        }
        // Parameters after the media type are fine.
        let ok = http_request(
            hook.port,
            "POST",
            &format!("{WEBHOOK_PATH}?wait=true"),
            &[("Content-Type", "application/json; charset=utf-8")],
            Some(body.as_bytes()),
        );
        assert_eq!(ok.status, 204);
        assert_eq!(
            hook.messages().len(),
            1,
            "only the valid request is a message"
        );
        assert_eq!(hook.requests_count(), cases.len() + 1);
    }

    #[test]
    fn webhook_scripted_429_then_204_on_one_connection() {
        let hook = WebhookReceiver::start();
        hook.respond_with(vec![(
            429,
            vec![
                ("Retry-After".to_string(), "1".to_string()),
                ("Content-Type".to_string(), "application/json".to_string()),
            ],
            r#"{"message": "You are being rate limited.", "retry_after": 1.0, "global": false}"#
                .to_string(),
        )]);
        let body = valid_payload().to_string();
        let headers = [("Content-Type", "application/json")];
        let mut conn = RawConnection::open(hook.port).unwrap();
        let first = conn
            .request("POST", WEBHOOK_PATH, &headers, Some(body.as_bytes()))
            .unwrap();
        assert!(first.keep_alive, "the receiver must support keep-alive");
        let first = first.response;
        assert_eq!(first.status, 429);
        assert_eq!(first.header("retry-after"), Some("1"));
        assert_eq!(first.json()["retry_after"], 1.0);
        assert!(
            hook.messages().is_empty(),
            "a rate-limited payload was not accepted"
        );
        // The same connection: keep-alive.
        let second = conn
            .request("POST", WEBHOOK_PATH, &headers, Some(body.as_bytes()))
            .unwrap()
            .response;
        assert_eq!(second.status, 204);
        assert_eq!(hook.messages().len(), 1);
        let statuses: Vec<Option<u16>> = hook.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![Some(429), Some(204)]);
        assert!(hook.violations().is_empty());
        // Both requests carried the same embed: accepted once, received twice.
        assert_eq!(hook.titles().len(), 1);
        assert_eq!(hook.all_titles().len(), 2);
    }

    #[test]
    fn webhook_hang_holds_the_request_unanswered() {
        let hook = WebhookReceiver::start();
        hook.set_hang(true);
        let body = valid_payload().to_string();
        let headers = [("Content-Type", "application/json")];
        let t = Instant::now();
        let err = try_http_request_timeout(
            hook.port,
            "POST",
            WEBHOOK_PATH,
            &headers,
            Some(body.as_bytes()),
            Duration::from_millis(300),
        )
        .expect_err("a hanging receiver must not answer");
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(hook.wait_for_requests(1, Duration::from_secs(1)), 1);
        assert!(hook.messages().is_empty());
        hook.set_hang(false);
        assert_eq!(post_json(hook.port, WEBHOOK_PATH, &body).status, 204);
    }
}
