//! When a failed call may be tried at another node: only when the request provably never
//! left this process.
//!
//! tonic opens a channel's connection when a call needs it. If that fails (refused, no route,
//! DNS, the connect timeout), the connector's error is a [`tonic::ConnectError`], kept in the
//! source chain of the call's `Status`; no byte of the request was written, so trying the next
//! node cannot apply it twice. Any other failure (a reset or a closed connection after the
//! request went out, an HTTP/2 error, a status sent by a node) may come after the node
//! received the request, so the request is "maybe sent" and a write's answer is final.
//!
//! A typed check, not a match on the message: "connection reset" contains "connect" too, and
//! a node's own UNAVAILABLE crosses the wire as text without a source chain.

pub use crate::error::not_sent;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::proto::pb;

    /// Bound on each test call, so a broken test fails instead of hanging.
    const CALL_MS_MAX: u64 = 10_000;

    async fn submit_status(addr: &str) -> tonic::Status {
        let mut client = super::super::api_client(addr, super::super::Bearer(None), None).unwrap();
        let call = client.submit(pb::SubmitRequest::default());
        match tokio::time::timeout(Duration::from_millis(CALL_MS_MAX), call).await {
            Ok(Err(status)) => status,
            Ok(Ok(_)) => panic!("the call to {addr} succeeded"),
            Err(_) => panic!("the call to {addr} did not end within {CALL_MS_MAX} ms"),
        }
    }

    /// A refused connection is not sent: nothing listens on the port (bound, then dropped).
    #[tokio::test]
    async fn not_sent_connection_refused() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let status = submit_status(&addr.to_string()).await;
        assert!(not_sent(&status), "{status:?}");
    }

    /// Reads HTTP/2 frames until a stream's request has ended (END_STREAM on its HEADERS or
    /// DATA frame). The server's empty SETTINGS frame goes first so the client need not wait.
    async fn read_one_request(socket: &mut tokio::net::TcpStream) -> bool {
        const PREFACE: usize = 24;
        const FRAME_HEADER: usize = 9;
        const END_STREAM: u8 = 0x1;
        socket
            .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut buf = Vec::new();
        let mut at = PREFACE;
        loop {
            while buf.len() >= at + FRAME_HEADER {
                let h = &buf[at..at + FRAME_HEADER];
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                let (kind, flags) = (h[3], h[4]);
                if matches!(kind, 0 | 1) && flags & END_STREAM != 0 {
                    return true;
                }
                at += FRAME_HEADER + len;
            }
            match socket.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
    }

    /// A connection reset after the whole request was written is not "not sent": the node
    /// may have applied it, so a write must not move on to another node.
    #[tokio::test]
    async fn not_sent_reset_after_request_is_maybe_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let received = read_one_request(&mut socket).await;
            // Close with a reset (RST), not a FIN: "connection reset by peer".
            socket.set_zero_linger().unwrap();
            drop(socket);
            received
        });
        let status = submit_status(&addr.to_string()).await;
        assert!(
            server.await.unwrap(),
            "the request never reached the server"
        );
        assert!(!not_sent(&status), "{status:?}");
    }
}
