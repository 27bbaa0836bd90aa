use std::io::Read;
use std::io::Result as IoResult;
use std::sync::Arc;

use crate::limits::ConnectionState;

/// A `Reader` that reads exactly the number of bytes from a sub-reader.
///
/// If the limit is reached, it returns EOF.
///
/// creditgate change: upstream read the remaining bytes when dropped, into
/// a buffer the size of what remained (a declared `Content-Length` of
/// 100 GB aborted the process), and on the thread that dropped the request.
/// Now the count of unread bytes is left to the connection's own thread,
/// which drains a bounded amount in small chunks or closes the connection.
pub struct EqualReader<R>
where
    R: Read,
{
    reader: R,
    size: usize,
    connection: Arc<ConnectionState>,
}

impl<R> EqualReader<R>
where
    R: Read,
{
    pub(crate) fn new(reader: R, size: usize, connection: Arc<ConnectionState>) -> EqualReader<R> {
        EqualReader {
            reader,
            size,
            connection,
        }
    }
}

impl<R> Read for EqualReader<R>
where
    R: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if self.size == 0 {
            return Ok(0);
        }

        let buf = if buf.len() < self.size {
            buf
        } else {
            &mut buf[..self.size]
        };

        match self.reader.read(buf) {
            Ok(0) => {
                // The peer closed before the body ended: nothing more can
                // come from this connection.
                self.connection.close();
                self.size = 0;
                Ok(0)
            }
            Ok(len) => {
                self.size -= len;
                Ok(len)
            }
            err @ Err(_) => {
                self.connection.close();
                err
            }
        }
    }
}

impl<R> Drop for EqualReader<R>
where
    R: Read,
{
    fn drop(&mut self) {
        // Must run before `reader` is dropped (which hands the stream to
        // the next request's reader): fields drop after this body.
        self.connection.leave_unread(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::EqualReader;
    use crate::limits::ConnectionState;
    use std::io::Read;
    use std::sync::Arc;

    #[test]
    fn test_limit() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());
        let state = Arc::new(ConnectionState::default());

        {
            let mut equal_reader = EqualReader::new(org_reader.by_ref(), 5, state.clone());

            let mut string = String::new();
            equal_reader.read_to_string(&mut string).unwrap();
            assert_eq!(string, "hello");
        }
        assert_eq!(state.take_unread(), 0);

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, " world");
    }

    #[test]
    fn unread_bytes_are_left_to_the_connection_not_read() {
        use std::io::Cursor;

        let mut org_reader = Cursor::new("hello world".to_string().into_bytes());
        let state = Arc::new(ConnectionState::default());

        {
            let mut equal_reader = EqualReader::new(org_reader.by_ref(), 5, state.clone());

            let mut vec = [0];
            equal_reader.read_exact(&mut vec).unwrap();
            assert_eq!(vec[0], b'h');
        }
        assert_eq!(state.take_unread(), 4);

        let mut string = String::new();
        org_reader.read_to_string(&mut string).unwrap();
        assert_eq!(string, "ello world");
    }
}
