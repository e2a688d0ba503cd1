//! Requests written by hand on a TCP socket, for what an HTTP client library will not do:
//! send a request head and withhold (part of) the body it announces, then read the answer.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an answer may take before the test fails: generous, it only bounds a hang (the
/// answers awaited here come at once, or never when the service waits for the body).
const ANSWER_DEADLINE: Duration = Duration::from_secs(15);

/// A request in progress: its head (and perhaps the start of its body) sent, the rest held.
pub struct HeldRequest {
    stream: TcpStream,
}

/// An answer read off the socket.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl RawAnswer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

impl HeldRequest {
    /// Connects to the app at `base_url` (`http://host:port`) and sends `head` (the request
    /// line and headers, without the blank line that ends them) and `body_start`.
    pub async fn send(base_url: &str, head: &str, body_start: &[u8]) -> Self {
        let address = base_url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).await.expect("the app listens");
        let head = format!("{}\r\n\r\n", head.trim_end());
        stream.write_all(head.as_bytes()).await.expect("head sent");
        stream.write_all(body_start).await.expect("body start sent");
        stream.flush().await.expect("flushed");
        Self { stream }
    }

    /// Sends more of the body.
    pub async fn send_more(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("body sent");
        self.stream.flush().await.expect("flushed");
    }

    /// Waits for the interim `100 Continue` that a request sent with `Expect: 100-continue`
    /// gets when the service starts reading its body (panics after [`ANSWER_DEADLINE`]).
    pub async fn until_continue(&mut self) {
        let head = tokio::time::timeout(ANSWER_DEADLINE, async {
            // Byte by byte: what follows belongs to the final answer.
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let byte = self.stream.read_u8().await.expect("an interim answer");
                head.push(byte);
            }
            String::from_utf8_lossy(&head).into_owned()
        })
        .await
        .expect("100 Continue: the service reads the body");
        assert!(
            head.starts_with("HTTP/1.1 100 "),
            "not 100 Continue: {head}"
        );
    }

    /// Whether the service closes the connection (end of file or an error) within `within`,
    /// whatever it sends before.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 4096];
        tokio::time::timeout(within, async {
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }

    /// Reads the answer; panics when none comes within [`ANSWER_DEADLINE`] (the service
    /// waits for the rest of the body).
    pub async fn answer(&mut self) -> RawAnswer {
        tokio::time::timeout(ANSWER_DEADLINE, read_answer(&mut self.stream))
            .await
            .expect("an answer without the rest of the body")
    }
}

async fn read_answer(stream: &mut TcpStream) -> RawAnswer {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await.expect("read the answer");
        assert!(n > 0, "closed before an answer: {buffer:?}");
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .expect("answers here carry a content-length");
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.expect("read the answer body");
        assert!(n > 0, "closed within the answer body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    RawAnswer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
