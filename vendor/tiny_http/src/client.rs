use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read};
use std::sync::Arc;
use std::time::Instant;

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Method};
use crate::limits::{ConnectionState, DeadlineReader, Limits};
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// The buffered, deadline-checked read side of a connection.
type Source = BufReader<DeadlineReader<RefinedTcpStream>>;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
///
/// creditgate changes: every line of a request head is bounded (414, 431),
/// the head must arrive within a deadline (408), bytes that are not ASCII
/// get a 400 instead of a silent close, the server's own refusals carry a
/// body from [`Limits::refusal_body`], and a body left unread by the
/// previous request is drained here, in bounded chunks up to a cap, or the
/// connection closes.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<Source>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<Source>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // creditgate: shared with the requests of this connection
    state: Arc<ConnectionState>,

    limits: Limits,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    /// creditgate: the request line is longer than the limit
    RequestLineTooLong,
    /// creditgate: a header line or the header block is larger than the limit
    HeaderTooLarge(HTTPVersion),
    /// creditgate: the head did not arrive in time, after it had started
    HeadTimedOut,
    /// creditgate: the connection must not be read from any more
    Closing,
    ReadIoError(IoError),
}

/// Why a line could not be read.
enum LineError {
    TooLong,
    Io(IoError),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        limits: Limits,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let state = Arc::new(ConnectionState::default());

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(
            1024,
            DeadlineReader::new(read_socket, state.clone()),
        ));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            state,
            limits,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source, at most
    /// `max_bytes` of it (without its `CRLF`).
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line. When `first_byte` is given, it is
    ///  called once the line's first byte has arrived.
    fn read_next_line(
        &mut self,
        max_bytes: usize,
        mut first_byte: Option<&mut dyn FnMut()>,
    ) -> Result<Vec<u8>, LineError> {
        let mut buf = Vec::new();
        let mut prev_byte_was_cr = false;
        let source = self.next_header_source.wait_turn();

        loop {
            let available = match source.fill_buf() {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) => return Err(LineError::Io(err)),
            };
            if available.is_empty() {
                return Err(LineError::Io(IoError::new(
                    ErrorKind::ConnectionAborted,
                    "Unexpected EOF",
                )));
            }
            if let Some(callback) = first_byte.take() {
                callback();
            }
            let mut used = 0;
            for &byte in available {
                used += 1;
                if byte == b'\n' && prev_byte_was_cr {
                    buf.pop(); // removing the '\r'
                    source.consume(used);
                    return Ok(buf);
                }
                prev_byte_was_cr = byte == b'\r';
                // `max_bytes` counts the line without its CRLF; the `\r`
                // that may end it is allowed one byte more.
                if buf.len() >= max_bytes + usize::from(prev_byte_was_cr) {
                    source.consume(used);
                    return Err(LineError::TooLong);
                }
                buf.push(byte);
            }
            source.consume(used);
        }
    }

    /// Writes one of the server's own refusals and flushes it.
    fn refuse(&mut self, status: u16, reason: &str, version: HTTPVersion) {
        let writer = self.sink.next().unwrap();
        crate::refusal_response(&self.limits, status, reason)
            .raw_print(writer, version, &[], false, None)
            .ok();
    }

    /// Reads and throws away what the previous request left of its body,
    /// in small chunks, if it is no more than the limit allows.
    fn drain_unread_body(&mut self) -> Result<(), ReadError> {
        let unread = self.state.take_unread();
        if unread == 0 {
            return Ok(());
        }
        if unread > self.limits.unread_body_drain_bytes_max {
            return Err(ReadError::Closing);
        }
        let mut left = unread;
        let mut chunk = [0u8; 8192];
        let source = self.next_header_source.wait_turn();
        while left > 0 {
            let want = left.min(chunk.len());
            match source.read(&mut chunk[..want]) {
                Ok(0) => return Err(ReadError::Closing),
                Ok(n) => left -= n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Closing),
            }
        }
        Ok(())
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // creditgate: wait for the previous request to be done with the
        // stream, then see whether the connection may go on.
        self.next_header_source.wait_turn();
        if self.state.closing() {
            return Err(ReadError::Closing);
        }
        self.drain_unread_body()?;

        let result = self.read_head_and_request();
        self.state.set_head_deadline(None);
        result
    }

    fn read_head_and_request(&mut self) -> Result<Request, ReadError> {
        let (method, path, version, headers) = {
            // reading the request line; the head's deadline starts with its
            // first byte (an idle keep-alive connection is bounded by the
            // socket's read timeout instead)
            let (method, path, version) = {
                let state = self.state.clone();
                let deadline = self.limits.header_deadline;
                let mut arm = move || state.set_head_deadline(Some(Instant::now() + deadline));
                let line = match self
                    .read_next_line(self.limits.request_line_bytes_max, Some(&mut arm))
                {
                    Ok(line) => line,
                    Err(LineError::TooLong) => return Err(ReadError::RequestLineTooLong),
                    Err(LineError::Io(err)) => return Err(ReadError::ReadIoError(err)),
                };
                let line =
                    AsciiString::from_ascii(line).map_err(|_| ReadError::WrongRequestLine)?;

                parse_request_line(
                    line.as_str().trim(), // TODO: remove this conversion
                )?
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::new();
                let mut block_bytes = 0usize;
                loop {
                    let line = match self.read_next_line(self.limits.header_line_bytes_max, None)
                    {
                        Ok(line) => line,
                        Err(LineError::TooLong) => {
                            return Err(ReadError::HeaderTooLarge(version))
                        }
                        Err(LineError::Io(err)) if is_timeout(&err) => {
                            return Err(ReadError::HeadTimedOut)
                        }
                        Err(LineError::Io(err)) => return Err(ReadError::ReadIoError(err)),
                    };
                    block_bytes += line.len() + 2;
                    if block_bytes > self.limits.header_block_bytes_max {
                        return Err(ReadError::HeaderTooLarge(version));
                    }
                    let line = AsciiString::from_ascii(line)
                        .map_err(|_| ReadError::WrongHeader(version.clone()))?;

                    if line.is_empty() {
                        break;
                    };
                    headers.push(match FromStr::from_str(line.as_str().trim()) {
                        // TODO: remove this conversion
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };

        // building the writer for the request
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            // creditgate: a peer gone before its address was read is not a
            // reason to panic the connection's thread.
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
            self.state.clone(),
        )
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

/// A socket read timeout shows as `WouldBlock` on Unix (`EAGAIN`), the
/// head deadline as `TimedOut`.
fn is_timeout(err: &IoError) -> bool {
    matches!(err.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            // Every refusal closes the connection: after it we don't know
            // where the next request would start.
            let rq = match self.read() {
                Err(ReadError::WrongRequestLine) => {
                    self.refuse(400, "the request line is malformed", HTTPVersion(1, 1));
                    return None;
                }

                Err(ReadError::WrongHeader(ver)) => {
                    self.refuse(400, "a header line is malformed or not ASCII", ver);
                    return None;
                }

                Err(ReadError::RequestLineTooLong) => {
                    self.refuse(414, "the request line is too long", HTTPVersion(1, 1));
                    return None;
                }

                Err(ReadError::HeaderTooLarge(ver)) => {
                    self.refuse(431, "the request's headers are too large", ver);
                    return None;
                }

                Err(ReadError::HeadTimedOut) => {
                    self.refuse(408, "the request's head did not arrive in time", HTTPVersion(1, 1));
                    return None;
                }

                Err(ReadError::ReadIoError(ref err))
                    if err.kind() == ErrorKind::TimedOut =>
                {
                    // The head deadline passed during the request line.
                    self.refuse(408, "the request's head did not arrive in time", HTTPVersion(1, 1));
                    return None;
                }

                Err(ReadError::ExpectationFailed(ver)) => {
                    self.refuse(417, "the Expect header is not supported", ver);
                    return None; // TODO: should be recoverable, but needs handling in case of body
                }

                // An idle connection timing out, a peer gone, or a
                // connection that must close: end quietly.
                Err(ReadError::Closing) | Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                let writer = self.sink.next().unwrap();
                let response = Response::from_string(
                    "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                )
                .with_status_code(StatusCode(505));
                response
                    .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                    .ok();
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
