//! Line framing of the upstream protocol, as the coreapp reads it: a line
//! longer than the limit, or one that is not UTF-8, is skipped and reported
//! as such instead of failing the stream, so that one odd inbound frame
//! costs that frame, not the session (and never a hasty reconnect).

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder, LinesCodec, LinesCodecError};

/// One line from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamLine {
    /// A complete line.
    Line(String),
    /// A line longer than the limit; its bytes were discarded.
    Oversized,
    /// A line that is not UTF-8; its bytes were discarded.
    NotUtf8,
}

/// [`LinesCodec`] with skipping instead of errors.
#[derive(Debug, Clone)]
pub struct UpstreamLines {
    inner: LinesCodec,
}

impl UpstreamLines {
    /// Lines of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> UpstreamLines {
        UpstreamLines { inner: LinesCodec::new_with_max_length(max_bytes) }
    }

    fn skip_errors(decoded: Result<Option<String>, LinesCodecError>) -> Result<Option<UpstreamLine>, LinesCodecError> {
        match decoded {
            Ok(line) => Ok(line.map(UpstreamLine::Line)),
            // The codec goes on discarding up to the next newline by itself.
            Err(LinesCodecError::MaxLineLengthExceeded) => Ok(Some(UpstreamLine::Oversized)),
            // Decoding does no I/O: an I/O error here is bad UTF-8, already consumed.
            Err(LinesCodecError::Io(_)) => Ok(Some(UpstreamLine::NotUtf8)),
        }
    }
}

impl Decoder for UpstreamLines {
    type Item = UpstreamLine;
    type Error = LinesCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<UpstreamLine>, LinesCodecError> {
        Self::skip_errors(self.inner.decode(buf))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<UpstreamLine>, LinesCodecError> {
        Self::skip_errors(self.inner.decode_eof(buf))
    }
}

impl Encoder<String> for UpstreamLines {
    type Error = LinesCodecError;

    fn encode(&mut self, line: String, buf: &mut BytesMut) -> Result<(), LinesCodecError> {
        self.inner.encode(line, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_or_garbled_line_is_skipped_and_the_next_one_read() {
        let mut codec = UpstreamLines::new(8);
        let mut buf = BytesMut::from(&b"0123456789abcdef\n\xff\xfe\nok\n"[..]);
        let mut lines = Vec::new();
        while let Some(line) = codec.decode(&mut buf).unwrap() {
            lines.push(line);
        }
        assert_eq!(lines, [UpstreamLine::Oversized, UpstreamLine::NotUtf8, UpstreamLine::Line("ok".into())]);
    }

    #[test]
    fn an_oversized_line_split_across_reads_is_skipped_once() {
        let mut codec = UpstreamLines::new(4);
        let mut buf = BytesMut::from(&b"aaaaaa"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(UpstreamLine::Oversized));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"aaaa\nhi\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(UpstreamLine::Line("hi".into())));
    }
}
