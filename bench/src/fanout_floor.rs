//! The fan-out floor (issue 16): the least any server can do to deliver one change to N
//! event-stream clients on this machine, measured in the same run as Reeltime's
//! `/api/events` so the two share the machine's state.
//!
//! It is a process of its own (`bench fanout-floor <database url> <frame bytes>`, started by
//! the `sse` bench from its own executable), with a tokio runtime of as many worker threads as
//! the release server's, so the load generator's reads do not run on its threads. It LISTENs
//! on [`CHANNEL`]; the bench's update of a plain table notifies it in the same statement with
//! the marker as the payload, so both paths start at an update sent to Postgres and include
//! its notification. Each notification becomes one frame of Reeltime's frame size for the same
//! job (built once) sent through one `tokio::sync::broadcast` to every connection's task,
//! which writes it with one `write_all`. Nothing else: no HTTP framing after a bare `200`
//! head, no authentication, no reading of a log, no per-client state beyond the socket.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::*;

/// The notification channel the floor listens on.
pub(crate) const CHANNEL: &str = "reeltime_bench_fanout";

/// The table the floor's updates change: no trigger, no index but its key.
pub(crate) const TABLE: &str =
    "create table bench_fanout (id int primary key, marker text); insert into bench_fanout values (1, '')";

/// One update of the floor's table that notifies the floor with `marker`, in one statement.
pub(crate) const UPDATE: &str =
    "with changed as (update bench_fanout set marker = $1 where id = 1 returning marker) \
     select pg_notify('reeltime_bench_fanout', marker) from changed";

type Frame = Arc<Vec<u8>>;

/// Serve the floor until killed; prints `fan-out floor at <address>` once listening.
pub(crate) async fn serve(database_url: &str, frame_bytes: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let (sender, _) = broadcast::channel::<Frame>(4096);
    let mut notifications = PgListener::connect(database_url).await?;
    notifications.listen(CHANNEL).await?;
    println!("fan-out floor at {}", listener.local_addr()?);
    let frames = sender.clone();
    tokio::spawn(async move {
        let mut position = 0u64;
        while let Ok(notification) = notifications.recv().await {
            position += 1;
            let _ = frames.send(Arc::new(frame(
                position,
                notification.payload(),
                frame_bytes,
            )));
        }
    });
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::spawn(client(socket, sender.subscribe()));
    }
}

/// An event frame carrying `"error":"<marker>"` (what the bench's clients look for), padded to
/// `size` bytes.
fn frame(position: u64, marker: &str, size: usize) -> Vec<u8> {
    let head =
        format!("id: 1.{position}\nevent: update\ndata: {{\"error\":\"{marker}\",\"pad\":\"");
    let tail = "\"}\n\n";
    let pad = size.saturating_sub(head.len() + tail.len());
    let mut out = head.into_bytes();
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(tail.as_bytes());
    out
}

/// One client: read its request's head, answer `200`, then write every frame as it comes.
async fn client(mut socket: TcpStream, mut frames: broadcast::Receiver<Frame>) -> Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buffer = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..n]);
    }
    drop(request);
    socket
        .write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\nretry: 1000\n\n",
        )
        .await?;
    loop {
        match frames.recv().await {
            Ok(frame) => socket.write_all(&frame).await?,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Start the floor on `database_url` (which must hold [`TABLE`]) with frames of `frame_bytes`,
/// from this executable.
pub(crate) async fn start(database_url: &str, frame_bytes: usize) -> Result<Server> {
    let child = Command::new(std::env::current_exe()?)
        .args(["fanout-floor", database_url, &frame_bytes.to_string()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    announced(child, "fan-out floor at ").await
}
