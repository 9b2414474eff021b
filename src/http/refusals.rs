//! Gives the HTTP parser's own refusals the service's JSON error body.
//!
//! hyper answers a request it cannot parse (400), whose URI is too long
//! (414) or whose head is over the buffer limit (431) by itself, before any
//! handler runs, with an empty body, and closes the connection. The README
//! promises a JSON error for every refusal, so every connection's stream is
//! wrapped in [`JsonRefusals`]: it recognises such an automatic answer in
//! what hyper writes and writes the error JSON in its place.
//!
//! Recognising it is exact: the automatic answer is the only response with
//! one of those statuses and `content-length: 0` (every handler's error has
//! a JSON body), and a CR LF pair cannot occur inside a JSON body, so the
//! status line and header block cannot be matched by a body's bytes.
//!
//! A refused client may still be sending (a 200 KiB header): closing with
//! unread bytes makes the kernel reset the connection, and the client then
//! loses the answer. After a refusal, the stream is drained for a short
//! while when it is dropped.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long a refused connection's remaining input is read and discarded.
const LINGER: Duration = Duration::from_secs(1);

/// The refusals hyper writes by itself: status line, error code, message.
const REFUSALS: [(&[u8], &str, &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request",
        "the request is not valid HTTP/1.1",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "uri_too_long",
        "the request's URI is too long",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "headers_too_large",
        "the request line and headers are too large",
    ),
];

/// A connection's stream, with hyper's bodiless refusals rewritten into
/// the error JSON.
pub struct JsonRefusals {
    inner: TcpStream,
    /// A rewritten answer not yet handed to the socket, and how much of it
    /// was.
    pending: Vec<u8>,
    written: usize,
    /// A refusal was answered: drain the input when dropped.
    refused: bool,
}

impl JsonRefusals {
    pub fn new(inner: TcpStream) -> Self {
        JsonRefusals {
            inner,
            pending: Vec::new(),
            written: 0,
            refused: false,
        }
    }

    /// Hands the pending rewritten answer to the socket.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

/// `buf` with hyper's automatic refusal (if it holds one) replaced by the
/// same status with the error JSON; `None` if it holds none.
pub fn rewrite(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let start = memchr::memmem::find(buf, b"HTTP/1.1 4")?;
    let rest = &buf[start..];
    let (status_line, code, message) = REFUSALS.iter().find(|(l, _, _)| rest.starts_with(l))?;
    let head_len = memchr::memmem::find(rest, b"\r\n\r\n")? + 4;
    let head = &rest[..head_len];
    // Only the bodiless answer: a handler's error always has a body.
    memchr::memmem::find(head, b"\r\ncontent-length: 0\r\n")?;
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    let mut out = Vec::with_capacity(buf.len() + body.len() + 96);
    out.extend_from_slice(&buf[..start]);
    out.extend_from_slice(status_line);
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&rest[head_len..]);
    let status = std::str::from_utf8(&status_line[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    Some((status, out))
}

impl AsyncRead for JsonRefusals {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonRefusals {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some((status, answer)) = rewrite(buf) {
            crate::internal_events::http_refused_unparsed(status);
            this.pending = answer;
            this.refused = true;
            // Taken whole; the rest goes out on the next write or flush.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Drop for JsonRefusals {
    fn drop(&mut self) {
        if !self.refused {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A duplicate of the socket outlives this wrapper and is drained.
        use std::os::fd::AsFd;
        let Ok(fd) = self.inner.as_fd().try_clone_to_owned() else {
            return;
        };
        let std = std::net::TcpStream::from(fd);
        if std.set_nonblocking(true).is_err() {
            return;
        }
        runtime.spawn(async move {
            let Ok(mut stream) = TcpStream::from_std(std) else {
                return;
            };
            let drain = async {
                stream.shutdown().await?;
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<(), io::Error>(())
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    fn body_of(answer: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(answer).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn hypers_bodiless_refusals_get_the_error_json() {
        for (line, status, code) in [
            ("HTTP/1.1 400 Bad Request", 400, "bad_request"),
            ("HTTP/1.1 414 URI Too Long", 414, "uri_too_long"),
            (
                "HTTP/1.1 431 Request Header Fields Too Large",
                431,
                "headers_too_large",
            ),
        ] {
            // Given hyper's automatic answer
            let raw = format!(
                "{line}\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 16:00:00 GMT\r\n\r\n"
            );
            // When it is rewritten
            let (got, answer) = rewrite(raw.as_bytes()).expect("recognised");
            // Then the status stays and the body is the error JSON, framed
            assert_eq!(got, status);
            let text = String::from_utf8(answer.clone()).unwrap();
            assert!(text.starts_with(line), "{text}");
            assert!(text.contains("content-type: application/json\r\n"));
            assert!(text.contains("connection: close\r\n"));
            let v = body_of(&answer);
            assert_eq!(v["error"]["code"], code);
            let len: usize = text
                .split("content-length: ")
                .nth(1)
                .and_then(|s| s.split("\r\n").next())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, text.split_once("\r\n\r\n").unwrap().1.len());
        }
    }

    #[test]
    fn a_refusal_after_an_earlier_answer_keeps_the_earlier_bytes() {
        let earlier = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}";
        let mut raw = earlier.to_vec();
        raw.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        let (_, answer) = rewrite(&raw).expect("recognised");
        assert!(answer.starts_with(earlier));
        assert_eq!(
            body_of(&answer[earlier.len()..])["error"]["code"],
            "bad_request"
        );
    }

    #[test]
    fn the_handlers_answers_pass_untouched() {
        for raw in [
            // A handler's error: a JSON body.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"error\":{\"code\":\"x\",\"message\":\"y\"}}"[..],
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            // A body quoting a status line (JSON escapes CR LF).
            b"HTTP/1.1 200 OK\r\ncontent-length: 60\r\n\r\n{\"s\":\"HTTP/1.1 400 Bad Request\\r\\ncontent-length: 0\\r\\n\\r\\n\"}",
        ] {
            assert!(rewrite(raw).is_none(), "{}", String::from_utf8_lossy(raw));
        }
    }
}
