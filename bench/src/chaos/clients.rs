//! SSE clients that behave as browsers do: they follow `/api/events`, and when the stream
//! ends or the server is gone they reconnect (after a pause) with `Last-Event-ID`, until told
//! to stop. Each records every change it applied (the job and the marker `m<k>` the writers
//! put in `error`), every reset, and each job's latest marker as its page would show it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// What one client saw.
#[derive(Default, Debug, Clone)]
pub struct Seen {
    /// Markers of applied changes, in arrival order.
    pub markers: Vec<u64>,
    pub resets: usize,
    pub reconnects: usize,
    /// Each job's marker as the client's page shows it (events and resets applied).
    pub view: HashMap<String, u64>,
    pub last_id: Option<String>,
}

pub type Shared = Arc<Mutex<Seen>>;

/// The marker `m<k>` in a job's `error`, if any.
pub fn marker(job: &Value) -> Option<u64> {
    job["error"].as_str()?.strip_prefix('m')?.parse().ok()
}

/// Start a client at `address` from `after`; it runs until `stop` turns true.
pub fn spawn(address: String, after: Option<String>, stop: watch::Receiver<bool>) -> Shared {
    let seen: Shared = Arc::default();
    let shared = seen.clone();
    tokio::spawn(async move {
        let mut stop = stop;
        let mut first = true;
        while !*stop.borrow() {
            if !first {
                shared.lock().unwrap().reconnects += 1;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.changed() => {}
                }
            }
            first = false;
            let last = shared.lock().unwrap().last_id.clone();
            tokio::select! {
                _ = follow(&address, after.as_deref(), last.as_deref(), &shared) => {}
                _ = stop.changed() => {}
            }
        }
    });
    seen
}

/// One connection: until the stream ends or fails.
async fn follow(address: &str, after: Option<&str>, last: Option<&str>, seen: &Shared) {
    let Ok(mut socket) = TcpStream::connect(address).await else {
        return;
    };
    let path = match after {
        Some(after) => format!("/api/events?after={after}"),
        None => "/api/events".to_owned(),
    };
    let header = last
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{}{header}\r\n",
        crate::authorization()
    );
    if socket.write_all(request.as_bytes()).await.is_err() {
        return;
    }
    let mut buffer = vec![0u8; 64 * 1024];
    // Bytes not yet de-chunked, and text not yet a whole frame.
    let mut pending: Vec<u8> = Vec::new();
    let mut carry = String::new();
    let mut in_body = false;
    loop {
        let n = match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        if !in_body {
            let Some(end) = find(&pending, b"\r\n\r\n") else {
                continue;
            };
            if !pending.starts_with(b"HTTP/1.1 200") {
                return;
            }
            pending.drain(..end + 4);
            in_body = true;
        }
        carry.push_str(&dechunk(&mut pending));
        let used = apply_frames(&carry, seen);
        carry.drain(..used);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The whole chunks at the start of a chunked body, as text; the rest stays in `pending`.
fn dechunk(pending: &mut Vec<u8>) -> String {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(line_end) = find(&pending[at..], b"\r\n").map(|i| at + i) {
        let Some(size) = std::str::from_utf8(&pending[at..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        let chunk = line_end + 2;
        if pending.len() < chunk + size + 2 {
            break;
        }
        out.extend_from_slice(&pending[chunk..chunk + size]);
        at = chunk + size + 2;
    }
    pending.drain(..at);
    String::from_utf8_lossy(&out).into_owned()
}

/// Apply the complete frames at the start of `text`; returns how many bytes they took.
fn apply_frames(text: &str, seen: &Shared) -> usize {
    let mut guard = seen.lock().unwrap();
    let mut used = 0;
    while let Some(end) = text[used..].find("\n\n") {
        let frame = &text[used..used + end];
        used += end + 2;
        let (mut id, mut event, mut data) = (None, None, String::new());
        for line in frame.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        let (Some(id), Some(event)) = (id, event) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        match event.as_str() {
            "reset" => {
                guard.resets += 1;
                guard.view.clear();
                for job in value["jobs"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(k)) = (job["id"].as_str(), marker(job)) {
                        guard.view.insert(id.to_owned(), k);
                    }
                }
            }
            "delete" => {
                if let Some(job_id) = value["id"].as_str() {
                    guard.view.remove(job_id);
                }
            }
            _ => {
                if let (Some(job_id), Some(k)) = (value["id"].as_str(), marker(&value)) {
                    guard.markers.push(k);
                    let shown = guard.view.entry(job_id.to_owned()).or_insert(0);
                    *shown = (*shown).max(k);
                }
            }
        }
        guard.last_id = Some(id);
    }
    used
}
