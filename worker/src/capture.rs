//! Bounded capture of guest output. A guest printing gigabytes must not exhaust host
//! memory, and must not be able to make its own writes fail either: bytes past the
//! bound are dropped and counted.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug, Default)]
struct Buffer {
    data: Vec<u8>,
    limit: usize,
    dropped: u64,
}

/// A shared, bounded byte sink that can be handed to WASI as stdout or stderr.
#[derive(Debug, Clone)]
pub(crate) struct Capture(Arc<Mutex<Buffer>>);

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        Capture(Arc::new(Mutex::new(Buffer {
            data: Vec::new(),
            limit,
            dropped: 0,
        })))
    }

    fn push(&self, bytes: &[u8]) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = buf.limit.saturating_sub(buf.data.len());
        let kept = room.min(bytes.len());
        buf.data.extend_from_slice(&bytes[..kept]);
        buf.dropped += (bytes.len() - kept) as u64;
    }

    /// Takes everything captured so far, leaving the sink empty, with the count of bytes
    /// dropped because the bound was reached.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let data = std::mem::take(&mut buf.data);
        let dropped = std::mem::take(&mut buf.dropped);
        (data, dropped)
    }

    /// The captured bytes as text, left in place (for inspecting a failure's output).
    pub(crate) fn peek_text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf.data).into_owned()
    }

    /// Takes the captured bytes as log text, noting any truncation on its own line.
    pub(crate) fn take_text(&self) -> String {
        let (data, dropped) = self.take();
        let mut text = String::from_utf8_lossy(&data).into_owned();
        if dropped > 0 {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[lamina] log output truncated: {dropped} bytes dropped\n"
            ));
        }
        text
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept: excess is dropped in `push`, so a flooding guest keeps running
        // (and is stopped by its timeout) instead of seeing write errors.
        Ok(1 << 20)
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_the_limit_and_counts_the_rest() {
        let c = Capture::new(8);
        c.push(b"hello ");
        c.push(b"world!");
        let (data, dropped) = c.take();
        assert_eq!(data, b"hello wo");
        assert_eq!(dropped, 4);
        c.push(b"again");
        assert_eq!(c.take_text(), "again");
        c.push(b"0123456789");
        assert_eq!(
            c.take_text(),
            "01234567\n[lamina] log output truncated: 2 bytes dropped\n"
        );
    }
}
