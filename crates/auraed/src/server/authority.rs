//! Repairs the `:authority` that stock gRPC clients send on `unix:` targets, below h2.
//!
//! grpcio (Python, C++, Ruby…), grpc-java and grpc-swift send the %-encoded socket path
//! (`tmp%2Frun%2Faurae.sock`) as `:authority` when they dial `unix:///tmp/run/aurae.sock`.
//! h2's server parses `:authority` with [`http::uri::Authority`], which refuses `%` in a
//! host, and resets every such stream with PROTOCOL_ERROR before any handler runs (the
//! upstream fix has not landed). tonic (our CLI), grpc-go and grpcurl send an authority
//! h2 accepts (grpc-go and grpcurl send `localhost`) and never meet this.
//!
//! [`AuthorityRepair`] wraps a connection's plaintext HTTP/2 bytes (inside TLS on the mTLS
//! path) and watches what the client sends. It reads the connection preface and the
//! frame headers, and gathers the first header block (HEADERS + CONTINUATION):
//! - if that block's `:authority` is one h2 accepts (or there is none), the block goes to
//!   h2 byte for byte and the connection becomes a plain pass-through: tonic, grpc-go and
//!   grpcurl clients pay for a scan of one block (about a microsecond: only the
//!   authority is decoded) and nothing after it;
//! - otherwise every header block from then on is decoded with the client's HPACK
//!   context (`loona-hpack`) and re-encoded without the dynamic table (literal fields
//!   without indexing, raw strings, no padding; priority fields kept), a refused
//!   `:authority` replaced by `localhost`. h2's own HPACK decoder then never holds an
//!   entry, so its state stays consistent whatever the client indexes. grpcio sends raw
//!   strings, which decode quickly; Huffman-coded strings cost loona-hpack some 15 µs
//!   each (it builds its tables per string), a price only such clients pay.
//!
//! Every other frame goes through untouched, and h2 still judges everything it judged
//! before: header names and values, sizes, stream ids, flow control. While the wrapper
//! only watches (nothing rewritten yet), whatever it does not understand is handed to h2
//! unchanged, so h2 answers with its own error. Once it rewrites, a frame sequence it
//! cannot follow ends the connection with an I/O error: it forwards nothing more.
//!
//! This module never decides who may call what and never looks at request bodies; the
//! write side (server to client) is not touched at all.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::uri::Authority;
use loona_hpack::Decoder;
use loona_hpack::decoder::DecoderError;
use loona_hpack::huffman::HuffmanDecoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What an HTTP/2 client sends before its first frame (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length, type, flags and stream id.
const FRAME_HEADER_LEN: usize = 9;
/// The largest frame h2 accepts and so the largest we emit: SETTINGS_MAX_FRAME_SIZE as
/// hyper advertises it for tonic's server (16 KiB, also the protocol's default). auraed
/// never sets `Server::max_frame_size`; if it ever raises it, this may follow.
const MAX_FRAME_SIZE: usize = 16_384;
/// SETTINGS_HEADER_TABLE_SIZE as the server advertises it (hyper sends none: the
/// protocol's 4 KiB). A client may not grow its dynamic table past it, and neither may
/// the decoder here: a bigger size update is a decoding error.
const HEADER_TABLE_SIZE: usize = 4_096;
/// The largest header block gathered or re-encoded. h2 accepts at most five
/// CONTINUATION frames of 16 KiB after a HEADERS frame with auraed's settings (about
/// 96 KiB) and a decoded header list of 16 KiB, so a larger block never reaches a
/// handler anyway; the bound keeps a hostile client from making us buffer more.
const MAX_HEADER_BLOCK: usize = 128 * 1024;
/// What grpc-go sends for `unix:` targets, and what a refused `:authority` becomes.
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";
/// How much is read from the connection at once while frames are parsed.
const READ_CHUNK: usize = 16 * 1024;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Stream dependency (4 bytes) and weight (1) of a HEADERS frame with PRIORITY.
const PRIORITY_LEN: usize = 5;

/// Why a connection's header blocks could not be followed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepairError {
    /// A CONTINUATION frame came without a HEADERS frame left open before it.
    #[error("CONTINUATION frame without an open header block")]
    ContinuationWithoutHeaders,
    /// Another frame came between a HEADERS frame and its last CONTINUATION.
    #[error("frame of type {kind} on stream {stream_id} inside a header block")]
    InterruptedHeaderBlock {
        /// The frame's type.
        kind: u8,
        /// The frame's stream.
        stream_id: u32,
    },
    /// A header frame is longer than the largest frame the server accepts.
    #[error("header frame of {len} bytes exceeds the maximum frame size {MAX_FRAME_SIZE}")]
    FrameTooLarge {
        /// The frame's payload length.
        len: usize,
    },
    /// A header block, as sent or once re-encoded, is over [`MAX_HEADER_BLOCK`].
    #[error("header block over {MAX_HEADER_BLOCK} bytes")]
    HeaderBlockTooLarge,
    /// A HEADERS frame's padding or priority fields do not fit in its payload.
    #[error("HEADERS frame with padding or priority longer than its payload")]
    BadPadding,
    /// The header block is not valid HPACK for the client's compression context.
    #[error("cannot decode the header block: {0}")]
    Hpack(DecoderError),
}

impl From<RepairError> for io::Error {
    fn from(error: RepairError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// A server-side connection whose client's refused `:authority` is replaced before h2
/// sees it; reads are repaired, writes pass through.
pub struct AuthorityRepair<S> {
    inner: S,
    /// `None` once the connection passes through untouched.
    repair: Option<Box<Repair>>,
}

impl<S> AuthorityRepair<S> {
    /// Wraps a freshly accepted connection, before any byte of it was read.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            repair: Some(Box::new(Repair::new())),
        }
    }

    /// Whether the connection is now a plain pass-through (its first header block was
    /// fine and everything buffered was delivered).
    pub fn is_pass_through(&self) -> bool {
        self.repair.is_none()
    }
}

impl<S: fmt::Debug> fmt::Debug for AuthorityRepair<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityRepair")
            .field("inner", &self.inner)
            .field("phase", &self.repair.as_ref().map(|r| r.transcoder.phase))
            .finish()
    }
}

impl<S: Connected> Connected for AuthorityRepair<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(repair) = this.repair.as_deref_mut() {
            match ready!(repair.poll_read(&mut this.inner, cx, buf)) {
                Delivered::Read(result) => return Poll::Ready(result),
                Delivered::PassThrough => this.repair = None,
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What one `poll_read` of the repairing side ended with.
enum Delivered {
    /// Bytes were put in the caller's buffer, or the connection ended or failed.
    Read(io::Result<()>),
    /// Nothing is buffered any more and the rest passes through untouched.
    PassThrough,
}

/// The read side's buffers around the [`Transcoder`].
struct Repair {
    transcoder: Transcoder,
    /// Read from the connection, not parsed yet.
    input: BytesMut,
    /// Ready for h2, in order.
    output: VecDeque<Bytes>,
    /// Set once: every later read fails with it.
    failed: Option<RepairError>,
    /// The client closed its side.
    eof: bool,
}

impl Repair {
    fn new() -> Self {
        Self {
            transcoder: Transcoder::new(),
            input: BytesMut::new(),
            output: VecDeque::new(),
            failed: None,
            eof: false,
        }
    }

    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<Delivered> {
        if buf.remaining() == 0 {
            return Poll::Ready(Delivered::Read(Ok(())));
        }
        loop {
            if let Some(error) = &self.failed {
                return Poll::Ready(Delivered::Read(Err(error.clone().into())));
            }
            if self.deliver(buf) {
                return Poll::Ready(Delivered::Read(Ok(())));
            }
            if self.eof {
                return Poll::Ready(Delivered::Read(Ok(())));
            }
            match self.transcoder.advance(&mut self.input, &mut self.output) {
                Ok(Progress::PassThrough) if self.output.is_empty() => {
                    return Poll::Ready(Delivered::PassThrough);
                }
                Ok(Progress::PassThrough) => continue,
                Ok(Progress::NeedMore) if self.output.is_empty() => {}
                Ok(Progress::NeedMore) => continue,
                Err(error) => {
                    tracing::info!(
                        error = %error,
                        "closing a connection whose HTTP/2 header blocks cannot be repaired"
                    );
                    self.fail(error);
                    continue;
                }
            }
            if self.transcoder.body > 0 && self.input.is_empty() {
                // The middle of a frame that goes through untouched: read it straight
                // into h2's buffer.
                return self.poll_body(inner, cx, buf).map(Delivered::Read);
            }
            if let Err(error) = ready!(self.poll_fill(inner, cx)) {
                return Poll::Ready(Delivered::Read(Err(error)));
            }
        }
    }

    /// Moves buffered output into `buf`; whether anything was moved.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let mut moved = false;
        while buf.remaining() > 0 {
            let Some(chunk) = self.output.front_mut() else {
                break;
            };
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.advance(n);
            if chunk.is_empty() {
                self.output.pop_front();
            }
            moved |= n > 0;
        }
        moved
    }

    fn fail(&mut self, error: RepairError) {
        self.failed = Some(error);
        self.input.clear();
        self.output.clear();
    }

    /// Reads the rest of an untouched frame payload directly into `buf`.
    fn poll_body<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let limit = self.transcoder.body.min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        ready!(Pin::new(inner).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.advance(n);
        self.transcoder.body -= n;
        if n == 0 {
            self.eof = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more of the connection into `input`; at its end, hands over what is left.
    fn poll_fill<S: AsyncRead + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let mut read = ReadBuf::new(&mut self.input[start..]);
        let polled = Pin::new(inner).poll_read(cx, &mut read);
        let n = read.filled().len();
        self.input.truncate(start + n);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                if n == 0 {
                    self.eof = true;
                    self.transcoder.end(&mut self.input, &mut self.output);
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading the client connection preface.
    Preface,
    /// Forwarding frames unchanged until the first header block decides.
    Watching,
    /// Re-encoding every header block (the first one had a refused `:authority`).
    Transcoding,
    /// Everything unchanged from here on.
    PassThrough,
}

/// What [`Transcoder::advance`] needs next.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// More input (whatever it produced is in the output already).
    NeedMore,
    /// Nothing: the rest of the connection passes through untouched.
    PassThrough,
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct Block {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    /// The HPACK fragments, in order.
    fragments: Vec<Bytes>,
    fragments_len: usize,
    /// The frames as they came, kept while watching so they can go to h2 unchanged.
    frames: Vec<Bytes>,
}

/// The read side's state machine, without I/O: input bytes in, bytes for h2 out.
struct Transcoder {
    phase: Phase,
    /// Bytes of the current untouched frame's payload still to forward.
    body: usize,
    block: Option<Block>,
    /// The client's HPACK context.
    decoder: Decoder<'static>,
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        Self {
            len: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
            kind,
            flags,
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
        }
    }

    fn put(buf: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
        // `len` is at most MAX_FRAME_SIZE, which fits in 24 bits.
        let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
        buf.put_slice(&len[1..]);
        buf.put_u8(kind);
        buf.put_u8(flags);
        buf.put_u32(stream_id);
    }
}

impl Transcoder {
    fn new() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            phase: Phase::Preface,
            body: 0,
            block: None,
            decoder,
        }
    }

    /// Consumes as much of `input` as it can, appending what h2 should read to `output`.
    fn advance(
        &mut self,
        input: &mut BytesMut,
        output: &mut VecDeque<Bytes>,
    ) -> Result<Progress, RepairError> {
        loop {
            match self.phase {
                Phase::PassThrough => {
                    if !input.is_empty() {
                        output.push_back(input.split().freeze());
                    }
                    return Ok(Progress::PassThrough);
                }
                Phase::Preface => {
                    let n = input.len().min(PREFACE.len());
                    if input[..n] != PREFACE[..n] {
                        // Not HTTP/2 with prior knowledge: h2 will say so.
                        self.phase = Phase::PassThrough;
                    } else if n < PREFACE.len() {
                        return Ok(Progress::NeedMore);
                    } else {
                        output.push_back(input.split_to(n).freeze());
                        self.phase = Phase::Watching;
                    }
                }
                Phase::Watching | Phase::Transcoding => {
                    if self.body > 0 {
                        if input.is_empty() {
                            return Ok(Progress::NeedMore);
                        }
                        let n = self.body.min(input.len());
                        output.push_back(input.split_to(n).freeze());
                        self.body -= n;
                        continue;
                    }
                    let Some(head) = input.first_chunk::<FRAME_HEADER_LEN>() else {
                        return Ok(Progress::NeedMore);
                    };
                    let head = FrameHead::parse(head);
                    match self.frame(head, input, output) {
                        Ok(true) => {}
                        Ok(false) => return Ok(Progress::NeedMore),
                        Err(error) if self.phase == Phase::Watching => {
                            tracing::debug!(
                                error = %error,
                                "leaving an HTTP/2 connection to h2 unchanged"
                            );
                            self.hand_over(input, output);
                        }
                        Err(error) => return Err(error),
                    }
                }
            }
        }
    }

    /// The client closed its side: while watching, h2 gets what is left unchanged.
    fn end(&mut self, input: &mut BytesMut, output: &mut VecDeque<Bytes>) {
        if matches!(self.phase, Phase::Preface | Phase::Watching) {
            self.hand_over(input, output);
        }
    }

    /// Gives up watching: the frames of a gathered block and the unparsed input go to
    /// h2 as they came, and so does everything after them.
    fn hand_over(&mut self, input: &mut BytesMut, output: &mut VecDeque<Bytes>) {
        if let Some(block) = self.block.take() {
            output.extend(block.frames);
        }
        if !input.is_empty() {
            output.push_back(input.split().freeze());
        }
        self.phase = Phase::PassThrough;
    }

    /// Handles the frame at the front of `input`; `false` when it is not all there yet.
    /// On an error nothing of the frame was consumed.
    fn frame(
        &mut self,
        head: FrameHead,
        input: &mut BytesMut,
        output: &mut VecDeque<Bytes>,
    ) -> Result<bool, RepairError> {
        match &self.block {
            Some(block) if head.kind != CONTINUATION || head.stream_id != block.stream_id => {
                return Err(RepairError::InterruptedHeaderBlock {
                    kind: head.kind,
                    stream_id: head.stream_id,
                });
            }
            None if head.kind == CONTINUATION => {
                return Err(RepairError::ContinuationWithoutHeaders);
            }
            None if head.kind != HEADERS => {
                output.push_back(input.split_to(FRAME_HEADER_LEN).freeze());
                self.body = head.len;
                return Ok(true);
            }
            _ => {}
        }
        if head.len > MAX_FRAME_SIZE {
            return Err(RepairError::FrameTooLarge { len: head.len });
        }
        let Some(whole) = input.get(..FRAME_HEADER_LEN + head.len) else {
            return Ok(false);
        };
        let payload = &whole[FRAME_HEADER_LEN..];
        let (priority, fragment) = if head.kind == HEADERS {
            headers_payload(head.flags, payload)?
        } else {
            (None, 0..payload.len())
        };
        let gathered = self.block.as_ref().map_or(0, |b| b.fragments_len);
        if gathered + fragment.len() > MAX_HEADER_BLOCK {
            return Err(RepairError::HeaderBlockTooLarge);
        }
        let frame = input.split_to(FRAME_HEADER_LEN + head.len).freeze();
        let block = self.block.get_or_insert_with(|| Block {
            stream_id: head.stream_id,
            end_stream: head.flags & END_STREAM != 0,
            priority,
            fragments: Vec::new(),
            fragments_len: 0,
            frames: Vec::new(),
        });
        block.fragments_len += fragment.len();
        block
            .fragments
            .push(frame.slice(FRAME_HEADER_LEN + fragment.start..FRAME_HEADER_LEN + fragment.end));
        if self.phase == Phase::Watching {
            block.frames.push(frame);
        }
        if head.flags & END_HEADERS != 0 {
            self.finish_block(output)?;
        }
        Ok(true)
    }

    /// Decodes the gathered block and decides what h2 gets for it.
    fn finish_block(&mut self, output: &mut VecDeque<Bytes>) -> Result<(), RepairError> {
        let Some(block) = &self.block else {
            return Ok(());
        };
        let hpack = match block.fragments.as_slice() {
            [one] => one.clone(),
            many => many.concat().into(),
        };
        if self.phase == Phase::Watching && scan_authorities(&hpack) == Scan::Accepted {
            // The common case (tonic, grpc-go, grpcurl): decided without a full decode.
            if let Some(block) = self.block.take() {
                output.extend(block.frames);
            }
            self.phase = Phase::PassThrough;
            return Ok(());
        }
        let reencoded = reencode(&mut self.decoder, &hpack)?;
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        match (self.phase, reencoded.refused_authority) {
            (Phase::Watching, None) => {
                output.extend(block.frames);
                self.phase = Phase::PassThrough;
            }
            (Phase::Watching, Some(refused)) => {
                tracing::debug!(
                    authority = %String::from_utf8_lossy(&refused),
                    replacement = %String::from_utf8_lossy(REPLACEMENT_AUTHORITY),
                    "a client sent an :authority h2 refuses (a stock gRPC client on a unix: \
                     target): re-encoding this connection's header blocks"
                );
                self.phase = Phase::Transcoding;
                output.push_back(header_frames(&block, &reencoded.block));
            }
            _ => output.push_back(header_frames(&block, &reencoded.block)),
        }
        Ok(())
    }
}

/// The priority fields and the range of the header block fragment in a HEADERS frame's
/// payload (RFC 9113 §6.2).
fn headers_payload(
    flags: u8,
    payload: &[u8],
) -> Result<(Option<[u8; PRIORITY_LEN]>, std::ops::Range<usize>), RepairError> {
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or(RepairError::BadPadding)?);
        start = 1;
        end = end.checked_sub(pad).ok_or(RepairError::BadPadding)?;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let fields = payload
            .get(start..start + PRIORITY_LEN)
            .and_then(|f| <[u8; PRIORITY_LEN]>::try_from(f).ok())
            .ok_or(RepairError::BadPadding)?;
        priority = Some(fields);
        start += PRIORITY_LEN;
    }
    if start > end {
        return Err(RepairError::BadPadding);
    }
    Ok((priority, start..end))
}

/// What a quick look at a connection's first header block found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Every `:authority` in it (if any) is one h2 accepts.
    Accepted,
    /// It has an `:authority` h2 refuses, or something the scan does not resolve (a
    /// reference into the dynamic table, malformed HPACK): a full decode decides.
    Undecided,
}

/// One Huffman decoder for the process: loona builds its tables on every `new`, which
/// costs more than decoding a few short strings.
static HUFFMAN: LazyLock<Mutex<HuffmanDecoder>> =
    LazyLock::new(|| Mutex::new(HuffmanDecoder::new()));

/// Looks for `:authority` in a connection's first header block without decoding the
/// other values: their strings are skipped by length (RFC 7541 §6), and only the
/// authority (and a name sent as a Huffman-coded literal) is decoded.
fn scan_authorities(hpack: &[u8]) -> Scan {
    let mut rest = hpack;
    while let Some(&first) = rest.first() {
        let prefix = match first {
            0x80.. => {
                let Some((index, _)) = take_integer(&mut rest, 7) else {
                    return Scan::Undecided;
                };
                // Static entry 1 is `:authority` with an empty value, which h2 refuses.
                if index == 1 || index > STATIC_TABLE_LEN {
                    return Scan::Undecided;
                }
                continue;
            }
            0x40.. => 6,
            0x20.. => {
                // A dynamic table size update: no field.
                if take_integer(&mut rest, 5).is_none() {
                    return Scan::Undecided;
                }
                continue;
            }
            _ => 4,
        };
        let Some((index, _)) = take_integer(&mut rest, prefix) else {
            return Scan::Undecided;
        };
        let is_authority = match index {
            0 => match take_string(&mut rest) {
                Some(name) => name.as_deref() == Some(b":authority".as_slice()),
                None => return Scan::Undecided,
            },
            1 => true,
            2..=STATIC_TABLE_LEN => false,
            _ => return Scan::Undecided,
        };
        if is_authority {
            match take_string(&mut rest) {
                Some(Some(value)) if h2_accepts_authority(&value) => {}
                _ => return Scan::Undecided,
            }
        } else if skip_string(&mut rest).is_none() {
            return Scan::Undecided;
        }
    }
    Scan::Accepted
}

/// Entries in HPACK's static table (RFC 7541 Appendix A); higher indices are dynamic.
const STATIC_TABLE_LEN: usize = 61;

/// An integer with an N-bit prefix (RFC 7541 §5.1) off the front of `rest`, and its
/// first octet; `None` if it is cut short or larger than any length in a block.
fn take_integer(rest: &mut &[u8], prefix_bits: u8) -> Option<(usize, u8)> {
    let (&first, mut tail) = rest.split_first()?;
    let max_prefix = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max_prefix;
    if value == max_prefix {
        let mut shift = 0;
        loop {
            let (&byte, after) = tail.split_first()?;
            tail = after;
            value = value.checked_add(usize::from(byte & 0x7f).checked_shl(shift)?)?;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
            if shift > 28 {
                return None;
            }
        }
    }
    *rest = tail;
    Some((value, first))
}

/// The raw bytes of a string literal off the front of `rest`, and whether they are
/// Huffman-coded.
fn take_encoded_string<'a>(rest: &mut &'a [u8]) -> Option<(&'a [u8], bool)> {
    let (len, first) = take_integer(rest, 7)?;
    let bytes = rest.get(..len)?;
    *rest = &rest[len..];
    Some((bytes, first & 0x80 != 0))
}

/// Skips a string literal; `None` if it is cut short.
fn skip_string(rest: &mut &[u8]) -> Option<()> {
    take_encoded_string(rest).map(|_| ())
}

/// A string literal, decoded; `Some(None)` if its Huffman coding is invalid.
fn take_string(rest: &mut &[u8]) -> Option<Option<Vec<u8>>> {
    let (bytes, huffman) = take_encoded_string(rest)?;
    if !huffman {
        return Some(Some(bytes.to_vec()));
    }
    let mut decoder = HUFFMAN.lock().unwrap_or_else(PoisonError::into_inner);
    Some(decoder.decode(bytes).ok())
}

/// A header block decoded and encoded again without the dynamic table.
struct Reencoded {
    block: BytesMut,
    /// The first `:authority` h2 would refuse, which `block` replaces.
    refused_authority: Option<Vec<u8>>,
}

/// Decodes `hpack` with the client's context and encodes every field as a literal
/// without indexing, replacing each `:authority` h2 refuses.
fn reencode(decoder: &mut Decoder<'static>, hpack: &[u8]) -> Result<Reencoded, RepairError> {
    let mut block = BytesMut::with_capacity(hpack.len() + hpack.len() / 2);
    let mut refused_authority = None;
    let mut too_large = false;
    decoder
        .decode_with_cb(hpack, |name, value| {
            let mut value: &[u8] = &value;
            if &*name == b":authority" && !h2_accepts_authority(value) {
                if refused_authority.is_none() {
                    refused_authority = Some(value.to_vec());
                }
                value = REPLACEMENT_AUTHORITY;
            }
            // Indexed fields can expand a small block a lot: stop writing past the bound.
            too_large |= block.len() + name.len() + value.len() + 2 * 5 + 1 > MAX_HEADER_BLOCK;
            if !too_large {
                put_literal(&mut block, &name, value);
            }
        })
        .map_err(RepairError::Hpack)?;
    if too_large {
        return Err(RepairError::HeaderBlockTooLarge);
    }
    Ok(Reencoded {
        block,
        refused_authority,
    })
}

/// h2's own rule for `:authority` (`Authority::from_maybe_shared` on the value's bytes).
fn h2_accepts_authority(value: &[u8]) -> bool {
    Authority::from_maybe_shared(Bytes::copy_from_slice(value)).is_ok()
}

/// A literal header field without indexing, new name, raw strings (RFC 7541 §6.2.2).
fn put_literal(block: &mut BytesMut, name: &[u8], value: &[u8]) {
    block.put_u8(0x00);
    put_string(block, name);
    put_string(block, value);
}

/// A string literal without Huffman coding (RFC 7541 §5.2).
fn put_string(block: &mut BytesMut, s: &[u8]) {
    put_integer(block, s.len(), 7, 0x00);
    block.put_slice(s);
}

/// An integer with an N-bit prefix (RFC 7541 §5.1).
fn put_integer(block: &mut BytesMut, mut value: usize, prefix_bits: u8, first: u8) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        // Fits in the prefix: less than 2^prefix_bits <= 128.
        block.put_u8(first | value as u8);
        return;
    }
    block.put_u8(first | max_prefix as u8);
    value -= max_prefix;
    while value >= 0x80 {
        block.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    block.put_u8(value as u8);
}

/// `hpack` as a HEADERS frame (with the block's END_STREAM and priority) followed by
/// CONTINUATION frames, none over [`MAX_FRAME_SIZE`], END_HEADERS on the last.
fn header_frames(block: &Block, hpack: &[u8]) -> Bytes {
    let frames = hpack.len() / MAX_FRAME_SIZE + 1;
    let mut out = BytesMut::with_capacity(hpack.len() + frames * FRAME_HEADER_LEN + PRIORITY_LEN);
    let priority_len = block.priority.map_or(0, |p| p.len());
    let (first, mut rest) = hpack.split_at(hpack.len().min(MAX_FRAME_SIZE - priority_len));
    let mut flags = 0;
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    FrameHead::put(
        &mut out,
        priority_len + first.len(),
        HEADERS,
        flags,
        block.stream_id,
    );
    if let Some(priority) = &block.priority {
        out.put_slice(priority);
    }
    out.put_slice(first);
    while !rest.is_empty() {
        let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_SIZE));
        let flags = if after.is_empty() { END_HEADERS } else { 0 };
        FrameHead::put(&mut out, chunk.len(), CONTINUATION, flags, block.stream_id);
        out.put_slice(chunk);
        rest = after;
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The first bytes of a real grpcio 1.85.3 call on `unix:///tmp/dumpsock` with
    /// default options, as a listener recorded them: preface, SETTINGS, WINDOW_UPDATE,
    /// SETTINGS ack, HEADERS (literals with incremental indexing, `:authority:
    /// tmp%2Fdumpsock`), WINDOW_UPDATE, DATA, WINDOW_UPDATE, RST_STREAM (the call's
    /// deadline passed).
    const GRPCIO_CALL: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a\
        000024040000000000000200000000000300000000000400400000000500400000000600004000fe\
        0300000001\
        000004080000000000003f0001\
        000000040100000000\
        0000ec01040000000140053a706174681c2f677270632e6865616c74682e76312e4865616c74682f\
        436865636b400a3a617574686f726974790e746d7025324664756d70736f636b8386400c636f6e74\
        656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c6572734014\
        677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20\
        677a6970400c677270632d74696d656f757405313530306d400a757365722d6167656e7430677270\
        632d707974686f6e2f312e38352e3320677270632d632f35382e302e3020286c696e75783b206368\
        7474703229\
        00000408000000000100000005\
        0000050001000000010000000000\
        00000408000000000000000005\
        00000403000000000100000002";

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
            .collect()
    }

    /// Runs `input` through a transcoder in chunks of `chunk` bytes, as reads would.
    fn run(input: &[u8], chunk: usize) -> Result<Vec<u8>, RepairError> {
        let mut transcoder = Transcoder::new();
        let mut buffered = BytesMut::new();
        let mut output = VecDeque::new();
        for piece in input.chunks(chunk) {
            buffered.extend_from_slice(piece);
            transcoder.advance(&mut buffered, &mut output)?;
        }
        transcoder.end(&mut buffered, &mut output);
        Ok(output.into_iter().flat_map(|b| b.to_vec()).collect())
    }

    /// The frames of `bytes` after the preface: (head, payload).
    fn frames(bytes: &[u8]) -> Vec<(FrameHead, Vec<u8>)> {
        let mut rest = bytes
            .strip_prefix(PREFACE)
            .expect("starts with the preface");
        let mut out = Vec::new();
        while !rest.is_empty() {
            let head = FrameHead::parse(rest.first_chunk().expect("a whole frame header"));
            let end = FRAME_HEADER_LEN + head.len;
            out.push((head, rest[FRAME_HEADER_LEN..end].to_vec()));
            rest = &rest[end..];
        }
        out
    }

    /// The header blocks of `bytes`, decoded by a fresh decoder as h2's would.
    fn decoded_blocks(bytes: &[u8]) -> Vec<Vec<(String, String)>> {
        let mut decoder = Decoder::new();
        let mut blocks = Vec::new();
        let mut hpack = Vec::new();
        for (head, payload) in frames(bytes) {
            match head.kind {
                HEADERS => {
                    let (_, range) = headers_payload(head.flags, &payload).unwrap();
                    hpack = payload[range].to_vec();
                }
                CONTINUATION => hpack.extend_from_slice(&payload),
                _ => continue,
            }
            assert!(head.len <= MAX_FRAME_SIZE, "frame of {} bytes", head.len);
            if head.flags & END_HEADERS != 0 {
                let fields = decoder.decode(&hpack).expect("h2 can decode what we emit");
                blocks.push(
                    fields
                        .into_iter()
                        .map(|(n, v)| {
                            (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap())
                        })
                        .collect(),
                );
            }
        }
        blocks
    }

    fn authority(block: &[(String, String)]) -> Option<&str> {
        block
            .iter()
            .find(|(n, _)| n == ":authority")
            .map(|(_, v)| v.as_str())
    }

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        FrameHead::put(&mut out, payload.len(), kind, flags, stream_id);
        out.put_slice(payload);
        out.to_vec()
    }

    fn request(authority: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/grpc.health.v1.Health/Check"),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .into_iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    fn encode(
        encoder: &mut loona_hpack::Encoder<'static>,
        fields: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<u8> {
        encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
    }

    fn with_preface(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn a_real_grpcio_call_gets_localhost_and_keeps_every_other_frame() {
        let input = hex(GRPCIO_CALL);
        for chunk in [1, 7, 64, input.len()] {
            let output = run(&input, chunk).unwrap();
            let blocks = decoded_blocks(&output);
            assert_eq!(blocks.len(), 1);
            assert_eq!(authority(&blocks[0]), Some("localhost"));
            assert_eq!(
                blocks[0],
                decoded_blocks(&input)[0]
                    .iter()
                    .map(|(n, v)| {
                        let v = if n == ":authority" { "localhost" } else { v };
                        (n.clone(), v.to_owned())
                    })
                    .collect::<Vec<_>>(),
                "every other field, in order"
            );
            let kept = |bytes: &[u8]| -> Vec<(u8, u8, u32, Vec<u8>)> {
                frames(bytes)
                    .into_iter()
                    .filter(|(h, _)| h.kind != HEADERS)
                    .map(|(h, p)| (h.kind, h.flags, h.stream_id, p))
                    .collect()
            };
            assert_eq!(kept(&output), kept(&input), "other frames untouched");
            let (head, _) = frames(&output)
                .into_iter()
                .find(|(h, _)| h.kind == HEADERS)
                .unwrap();
            assert_eq!(head.flags, END_HEADERS);
            assert_eq!(head.stream_id, 1);
        }
    }

    #[test]
    fn a_valid_authority_passes_through_byte_for_byte() {
        let mut encoder = loona_hpack::Encoder::new();
        let first = encode(&mut encoder, &request("localhost"));
        let second = encode(&mut encoder, &request("tmp%2Fnot-looked-at"));
        let input = with_preface(&[
            frame(0x4, 0, 0, &[]),
            frame(HEADERS, END_HEADERS, 1, &first),
            frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"),
            frame(HEADERS, END_HEADERS, 3, &second),
        ]);
        for chunk in [1, 5, input.len()] {
            assert_eq!(run(&input, chunk).unwrap(), input);
        }
        let mut transcoder = Transcoder::new();
        let mut buffered = BytesMut::from(&input[..]);
        let mut output = VecDeque::new();
        assert_eq!(
            transcoder.advance(&mut buffered, &mut output),
            Ok(Progress::PassThrough),
            "decided after the first block"
        );
    }

    #[test]
    fn the_scan_decides_only_for_blocks_it_can_read_alone() {
        let cases = [
            // RFC 7541 C.4.1: :authority www.example.com, Huffman-coded.
            ("828684418cf1e3c2e5f23a6ba0ab90f4ff", Scan::Accepted),
            // The same with a Huffman-coded literal name `custom-key` before it.
            (
                "828684 408825a849e95ba97d7f 8c f1e3c2e5f23a6ba0ab90f4ff 418cf1e3c2e5f23a6ba0ab90f4ff",
                Scan::Accepted,
            ),
            // A size update first, then no authority at all.
            ("3fe11f 828684", Scan::Accepted),
            // A refused authority, raw and Huffman-coded.
            ("8286844105746d70253f", Scan::Undecided),
            ("828684418f4d35aa2c3e551611db60caba0e4ebf", Scan::Undecided),
            // Static entry 1: `:authority` with an empty value.
            ("81", Scan::Undecided),
            // A reference into the dynamic table, and a block cut short.
            ("be", Scan::Undecided),
            ("828684418cf1e3c2", Scan::Undecided),
            // Invalid Huffman coding (EOS inside the string).
            ("4184ffffffff", Scan::Undecided),
        ];
        for (block, expected) in cases {
            assert_eq!(scan_authorities(&hex(block)), expected, "{block}");
        }
        let grpcio = &hex(GRPCIO_CALL);
        let (_, payload) = frames(grpcio)
            .into_iter()
            .find(|(h, _)| h.kind == HEADERS)
            .unwrap();
        assert_eq!(scan_authorities(&payload), Scan::Undecided);
    }

    #[test]
    fn a_huffman_coded_valid_authority_passes_through_byte_for_byte() {
        let input = with_preface(&[frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"),
        )]);
        assert_eq!(run(&input, 5).unwrap(), input);
    }

    #[test]
    fn a_block_without_authority_passes_through() {
        let mut encoder = loona_hpack::Encoder::new();
        let fields: Vec<_> = request("x")
            .into_iter()
            .filter(|(n, _)| n != b":authority")
            .collect();
        let input = with_preface(&[frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &encode(&mut encoder, &fields),
        )]);
        assert_eq!(run(&input, 3).unwrap(), input);
    }

    #[test]
    fn later_blocks_are_decoded_with_the_clients_dynamic_table() {
        // loona's encoder indexes every new field: the second and third blocks are mostly
        // indices into the client's table, which h2 never sees filled.
        let mut encoder = loona_hpack::Encoder::new();
        let mut frames_in = Vec::new();
        for (i, authority) in ["tmp%2Fa.sock", "tmp%2Fa.sock", "localhost"]
            .iter()
            .enumerate()
        {
            let id = 1 + 2 * u32::try_from(i).unwrap();
            frames_in.push(frame(
                HEADERS,
                END_HEADERS,
                id,
                &encode(&mut encoder, &request(authority)),
            ));
            frames_in.push(frame(0x0, END_STREAM, id, b"\0\0\0\0\0"));
        }
        let output = run(&with_preface(&frames_in), 11).unwrap();
        let blocks = decoded_blocks(&output);
        assert_eq!(blocks.len(), 3);
        for block in &blocks {
            assert_eq!(authority(block), Some("localhost"));
            assert_eq!(block.len(), 6);
            assert_eq!(
                block[2],
                (":path".into(), "/grpc.health.v1.Health/Check".into())
            );
        }
        for (head, payload) in frames(&output).iter().filter(|(h, _)| h.kind == HEADERS) {
            let (_, range) = headers_payload(head.flags, payload).unwrap();
            assert_eq!(
                payload[range].first(),
                Some(&0x00),
                "literal without indexing"
            );
        }
    }

    #[test]
    fn huffman_coded_fields_are_decoded_and_written_raw() {
        // Indexed :method GET, :scheme http, :path /; :authority (static name 1) with the
        // Huffman-coded value "tmp%2Fx%2Faurae.sock"; then a Huffman-coded
        // "www.example.com" (RFC 7541 C.4.1) under custom-key.
        let hpack = hex("828684 41 8f 4d35aa2c3e551611db60caba0e4ebf \
             40 0a 637573746f6d2d6b6579 8c f1e3c2e5f23a6ba0ab90f4ff");
        let refused = reencode(&mut Decoder::new(), &hpack)
            .unwrap()
            .refused_authority;
        assert_eq!(refused.as_deref(), Some(b"tmp%2Fx%2Faurae.sock".as_slice()));
        let input = with_preface(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, &hpack)]);
        let output = run(&input, 4).unwrap();
        let blocks = decoded_blocks(&output);
        assert_eq!(authority(&blocks[0]), Some("localhost"));
        assert_eq!(
            blocks[0].last(),
            Some(&("custom-key".to_owned(), "www.example.com".to_owned()))
        );
        let (head, _) = &frames(&output)[0];
        assert_eq!(head.flags, END_HEADERS | END_STREAM);
        assert!(
            output.windows(15).any(|w| w == b"www.example.com"),
            "raw strings in the output"
        );
    }

    #[test]
    fn continuation_frames_are_gathered_and_padding_and_priority_are_handled() {
        let mut encoder = loona_hpack::Encoder::new();
        let hpack = encode(&mut encoder, &request("tmp%2Fc.sock"));
        let (a, rest) = hpack.split_at(10);
        let (b, c) = rest.split_at(20);
        // HEADERS with PADDED (3 bytes of padding) and PRIORITY, then two CONTINUATIONs.
        let mut payload = vec![3];
        payload.extend_from_slice(&[0, 0, 0, 0, 15]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let input = with_preface(&[
            frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &payload),
            frame(CONTINUATION, 0, 1, b),
            frame(CONTINUATION, END_HEADERS, 1, c),
            frame(0x8, 0, 0, &[0, 0, 1, 0]),
        ]);
        let output = run(&input, 9).unwrap();
        let out_frames = frames(&output);
        assert_eq!(out_frames.len(), 2, "one HEADERS frame, then WINDOW_UPDATE");
        let (head, payload) = &out_frames[0];
        assert_eq!(head.kind, HEADERS);
        assert_eq!(head.flags, PRIORITY | END_STREAM | END_HEADERS);
        assert_eq!(payload[..5], [0, 0, 0, 0, 15], "priority kept");
        assert_eq!(authority(&decoded_blocks(&output)[0]), Some("localhost"));
        assert_eq!(out_frames[1].0.kind, 0x8);
    }

    #[test]
    fn a_large_block_is_split_within_the_max_frame_size() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut fields = request("tmp%2Fbig.sock");
        for i in 0..4 {
            fields.push((format!("x-big-{i}").into_bytes(), vec![b'v'; 9_000]));
        }
        let hpack = encode(&mut encoder, &fields);
        let mut input_frames = Vec::new();
        let mut chunks = hpack.chunks(MAX_FRAME_SIZE).peekable();
        let mut kind = HEADERS;
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            input_frames.push(frame(kind, flags, 1, chunk));
            kind = CONTINUATION;
        }
        let output = run(&with_preface(&input_frames), 1000).unwrap();
        let out = frames(&output);
        assert_eq!(out.len(), 3, "36 KiB of literals in three frames");
        assert!(out.iter().all(|(h, _)| h.len <= MAX_FRAME_SIZE));
        assert_eq!(out[0].0.kind, HEADERS);
        assert_eq!(out[0].0.flags, 0);
        assert_eq!(out[1].0.kind, CONTINUATION);
        assert_eq!(out[1].0.flags, 0);
        assert_eq!(out[2].0.flags, END_HEADERS);
        let blocks = decoded_blocks(&output);
        assert_eq!(authority(&blocks[0]), Some("localhost"));
        assert_eq!(blocks[0].len(), 10);
    }

    fn transcoding_prefix() -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        with_preface(&[frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut encoder, &request("tmp%2Fz")),
        )])
    }

    #[test]
    fn malformed_input_after_a_repair_is_an_error() {
        type IsExpected = fn(&RepairError) -> bool;
        let cases: Vec<(Vec<u8>, IsExpected)> = vec![
            (frame(CONTINUATION, END_HEADERS, 3, &[0x82]), |e| {
                *e == RepairError::ContinuationWithoutHeaders
            }),
            (
                [frame(HEADERS, 0, 3, &[0x82]), frame(0x0, 0, 3, &[])].concat(),
                |e| matches!(e, RepairError::InterruptedHeaderBlock { kind: 0, .. }),
            ),
            (
                [
                    frame(HEADERS, 0, 3, &[0x82]),
                    frame(CONTINUATION, END_HEADERS, 5, &[0x84]),
                ]
                .concat(),
                |e| matches!(e, RepairError::InterruptedHeaderBlock { stream_id: 5, .. }),
            ),
            (
                frame(HEADERS, END_HEADERS, 3, &[0xff, 0xff, 0xff, 0x7f]),
                |e| matches!(e, RepairError::Hpack(_)),
            ),
            // A dynamic table size update over the advertised 4 KiB.
            (
                frame(HEADERS, END_HEADERS, 3, &[0x3f, 0xe1, 0x3f, 0x82]),
                |e| *e == RepairError::Hpack(DecoderError::InvalidMaxDynamicSize),
            ),
            (frame(HEADERS, END_HEADERS | PADDED, 3, &[9, 0x82]), |e| {
                *e == RepairError::BadPadding
            }),
            (
                frame(HEADERS, END_HEADERS, 3, &vec![0x82; MAX_FRAME_SIZE + 1]),
                |e| matches!(e, RepairError::FrameTooLarge { .. }),
            ),
        ];
        for (bad, is_expected) in cases {
            let input = [transcoding_prefix(), bad].concat();
            let error = run(&input, 13).unwrap_err();
            assert!(is_expected(&error), "{error:?}");
        }
    }

    #[test]
    fn indexed_fields_cannot_expand_a_block_past_the_bound() {
        // One 4000-byte entry in the client's table, then 40 KiB of references to it.
        let mut input = transcoding_prefix();
        let mut hpack = vec![0x40, 0x05];
        hpack.extend_from_slice(b"x-big");
        hpack.extend_from_slice(&[0x7f, 0x81, 0x1e]); // 127 + 3841 = 3968
        hpack.extend_from_slice(&[b'v'; 3968]);
        input.extend(frame(HEADERS, END_HEADERS, 3, &hpack));
        let refs = vec![0x80 | 62; MAX_FRAME_SIZE];
        input.extend(frame(HEADERS, 0, 5, &refs));
        input.extend(frame(CONTINUATION, 0, 5, &refs));
        input.extend(frame(CONTINUATION, END_HEADERS, 5, &refs));
        assert_eq!(
            run(&input, 4096).unwrap_err(),
            RepairError::HeaderBlockTooLarge
        );
    }

    #[test]
    fn malformed_input_while_watching_goes_to_h2_unchanged() {
        let cases = [
            with_preface(&[frame(CONTINUATION, END_HEADERS, 1, &[0x82])]),
            with_preface(&[frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0x7f])]),
            with_preface(&[frame(HEADERS, 0, 1, &[0x82]), frame(0x0, 0, 1, b"ab")]),
            with_preface(&[frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82])]),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            PREFACE[..10].to_vec(),
            with_preface(&[frame(HEADERS, 0, 1, &[0x82])]),
        ];
        for input in cases {
            assert_eq!(run(&input, 3).unwrap(), input);
        }
    }

    #[test]
    fn random_input_never_panics() {
        // A small xorshift, so the cases are the same on every run.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2_000 {
            let len = usize::try_from(next() % 64).unwrap();
            let hpack: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let flags = next() as u8;
            let mut input = transcoding_prefix();
            input.extend(frame(HEADERS, flags, 3, &hpack));
            input.extend(frame(CONTINUATION, END_HEADERS, 3, &hpack));
            let _ = run(&input, 1 + usize::try_from(next() % 32).unwrap());
            let mut watching = with_preface(&[frame(HEADERS, flags, 1, &hpack)]);
            watching.extend(frame(CONTINUATION, END_HEADERS, 1, &hpack));
            let _ = run(&watching, 7);
        }
    }

    #[test]
    fn integers_round_trip_through_a_real_decoder() {
        for len in [0, 1, 126, 127, 128, 255, 16_383, 16_384, 1 << 20] {
            let mut block = BytesMut::new();
            put_literal(&mut block, b"x-len", &vec![b'a'; len]);
            let fields = Decoder::new().decode(&block).unwrap();
            assert_eq!(fields[0].1.len(), len);
        }
    }

    #[tokio::test]
    async fn the_stream_repairs_reads_and_passes_writes_and_ends() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = AuthorityRepair::new(server);
        let input = hex(GRPCIO_CALL);
        let writer = tokio::spawn(async move {
            let mut client = client;
            client.write_all(&input).await.unwrap();
            let mut reply = [0u8; 5];
            client.read_exact(&mut reply).await.unwrap();
            reply
        });
        let mut repaired = [0u8; 100];
        let mut output = Vec::new();
        // Small reads of varying sizes, as a worst case for the buffering.
        let mut n = 1;
        while decoded_blocks_or_empty(&output).is_empty() {
            let got = server.read(&mut repaired[..n]).await.unwrap();
            assert!(got > 0, "no end of file before the first block");
            output.extend_from_slice(&repaired[..got]);
            n = n % 97 + 1;
        }
        server.write_all(b"hello").await.unwrap();
        assert_eq!(&writer.await.unwrap(), b"hello");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        output.extend(rest);
        assert_eq!(authority(&decoded_blocks(&output)[0]), Some("localhost"));
        assert!(!server.is_pass_through());
    }

    /// The complete header blocks of a prefix of an output.
    fn decoded_blocks_or_empty(bytes: &[u8]) -> Vec<Vec<(String, String)>> {
        let Some(mut rest) = bytes.strip_prefix(PREFACE) else {
            return Vec::new();
        };
        let mut complete = PREFACE.len();
        while let Some(head) = rest.first_chunk::<FRAME_HEADER_LEN>() {
            let end = FRAME_HEADER_LEN + FrameHead::parse(head).len;
            if rest.len() < end {
                break;
            }
            complete += end;
            rest = &rest[end..];
        }
        decoded_blocks(&bytes[..complete])
    }

    #[tokio::test]
    async fn a_good_client_becomes_a_pass_through_and_reads_bodies_directly() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = AuthorityRepair::new(server);
        let mut encoder = loona_hpack::Encoder::new();
        let head = with_preface(&[frame(
            HEADERS,
            END_HEADERS,
            1,
            &encode(&mut encoder, &request("localhost")),
        )]);
        client.write_all(&head).await.unwrap();
        let mut got = vec![0u8; head.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, head);
        let body = frame(0x0, END_STREAM, 1, &[7u8; 1000]);
        client.write_all(&body).await.unwrap();
        drop(client);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, body);
        assert!(server.is_pass_through());
    }

    #[tokio::test]
    async fn an_error_fails_every_later_read() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let mut server = AuthorityRepair::new(server);
        let input = [
            transcoding_prefix(),
            frame(CONTINUATION, END_HEADERS, 3, &[0x82]),
        ]
        .concat();
        client.write_all(&input).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut first = Ok(0);
        for _ in 0..3 {
            first = server.read(&mut buf).await;
            if first.is_err() {
                break;
            }
        }
        assert_eq!(first.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            server.read(&mut buf).await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
