//! [`FileMediaStore`]: the media store the appliance runs. Files lie
//! beside the database (`<db dir>/media/` by default), each job's in its
//! own folder as `<dir>/<job_id>/<idx>.<ext>`. A file is written to a
//! temporary name in that folder, synced, then renamed, so a kept path
//! always holds a whole file. Owns no table (the rows are [`super::records`]'s).
//!
//! Bounds: each file at most [`MediaSettings::file_bytes_max`] (larger is
//! [`OUTPUT_TOO_LARGE`], permanent); all files together at most
//! [`MediaSettings::store_bytes_max`]; one `keep` at most
//! [`MediaSettings::keep_timeout_ms`] (downloads share that budget).
//!
//! A full store (the quota reached, or the disk out of space) is
//! [`KeepError::Transient`]: the output is fine and the upstream has
//! already done (and likely billed) the work, while space comes back by
//! itself (the retention sweep) or by the operator's hand. The worker
//! retries, and the job's own deadline bounds how long: past it the job
//! expires and its hold is released, never charged. Other local I/O
//! failures are transient for the same reason.
//!
//! The byte budget and the download timeout are measured with the OS's
//! monotonic clock: they bound real I/O, like a socket timeout, and decide
//! nothing a test replays.

use std::fs::{self, File};
#[cfg(feature = "http")]
use std::io::Read;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{
    check_type, extension, KeepError, KeptFile, MediaStore, MEDIA_STORE_FAILED, OUTPUT_TOO_LARGE,
    SNIFF_BYTES_MAX,
};
use crate::error::{Error, Result};
use crate::providers::Artifact;

/// The largest file kept, by default (the providers file's default
/// `download_bytes_max`).
pub const FILE_BYTES_MAX_DEFAULT: u64 = crate::providers::config::DOWNLOAD_BYTES_MAX_DEFAULT;
/// All kept files together, at most, by default: 20 GiB.
pub const STORE_BYTES_MAX_DEFAULT: u64 = 20 * 1024 * 1024 * 1024;
/// The longest one keep (every download of a job) may take, by default.
pub const KEEP_TIMEOUT_MS_DEFAULT: i64 = 10 * 60 * 1000;
/// The longest a download's connection setup may take, by default.
pub const CONNECT_TIMEOUT_MS_DEFAULT: i64 = 10_000;
/// The longest job id the store makes a folder of.
pub const JOB_ID_CHARS_MAX: usize = 64;
/// Bytes copied per read.
#[cfg(feature = "http")]
const CHUNK_BYTES: usize = 64 * 1024;
/// The name prefix of a file being written.
const TEMP_PREFIX: &str = ".part-";

/// Where and how much a [`FileMediaStore`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// The folder the files go in (created if missing).
    pub dir: PathBuf,
    /// The largest one file may be, in bytes.
    pub file_bytes_max: u64,
    /// All files together, at most, in bytes (the store's quota).
    pub store_bytes_max: u64,
    /// The longest one keep may take, downloads included.
    pub keep_timeout_ms: i64,
    /// The longest a download's connection setup may take.
    pub connect_timeout_ms: i64,
}

impl MediaSettings {
    /// Every default, with the files in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> MediaSettings {
        MediaSettings {
            dir: dir.into(),
            file_bytes_max: FILE_BYTES_MAX_DEFAULT,
            store_bytes_max: STORE_BYTES_MAX_DEFAULT,
            keep_timeout_ms: KEEP_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
        }
    }

    /// Every default, with the files in `media/` beside the database at
    /// `db_path`.
    pub fn beside(db_path: &Path) -> MediaSettings {
        let parent = db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        MediaSettings::new(parent.join("media"))
    }
}

/// Files beside the database; see the module header.
pub struct FileMediaStore {
    settings: MediaSettings,
    /// Bytes of every kept file (and of files being written).
    used: AtomicU64,
    #[cfg(feature = "http")]
    fetcher: super::fetch::Fetcher,
}

impl std::fmt::Debug for FileMediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMediaStore")
            .field("settings", &self.settings)
            .field("used_bytes", &self.used_bytes())
            .finish_non_exhaustive()
    }
}

impl FileMediaStore {
    /// Opens the store in `settings.dir` (creating it), removes what an
    /// interrupted write left, and counts the bytes it holds. Settings out
    /// of bounds are [`Error::InvalidRequest`]; a folder that cannot be
    /// made or read is [`Error::Internal`].
    pub fn open(settings: MediaSettings) -> Result<FileMediaStore> {
        if settings.file_bytes_max == 0 {
            return Err(Error::invalid("media.file_bytes_max", "must be above 0"));
        }
        if settings.store_bytes_max < settings.file_bytes_max {
            return Err(Error::invalid(
                "media.store_bytes_max",
                format!(
                    "must be at least the largest file ({} bytes)",
                    settings.file_bytes_max
                ),
            ));
        }
        if settings.keep_timeout_ms <= 0 || settings.connect_timeout_ms <= 0 {
            return Err(Error::invalid(
                "media.keep_timeout_ms",
                "timeouts must be above 0",
            ));
        }
        let dir_error = |err: std::io::Error| {
            Error::internal(format!(
                "the media folder {} cannot be used: {err}",
                settings.dir.display()
            ))
        };
        fs::create_dir_all(&settings.dir).map_err(dir_error)?;
        let used = tidy_and_count(&settings.dir).map_err(dir_error)?;
        Ok(FileMediaStore {
            #[cfg(feature = "http")]
            fetcher: super::fetch::Fetcher::new(Duration::from_millis(
                settings.connect_timeout_ms as u64,
            )),
            settings,
            used: AtomicU64::new(used),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &MediaSettings {
        &self.settings
    }

    /// Bytes the store holds now.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Keeps artifact `idx`, or says why not; on error nothing of it stays.
    fn keep_one(
        &self,
        job_id: &str,
        product: &str,
        idx: usize,
        artifact: &Artifact,
        budget: Budget,
    ) -> std::result::Result<KeptFile, KeepError> {
        let limit = budget.bytes_max;
        match artifact {
            Artifact::Inline { bytes, mime } => {
                if bytes.len() as u64 > limit {
                    return Err(too_large(limit));
                }
                let head = &bytes[..bytes.len().min(SNIFF_BYTES_MAX)];
                let mime = check_type(product, Some(mime), head)?;
                let mut sink = self.sink(job_id)?;
                sink.write(bytes)?;
                self.finish(sink, job_id, idx, mime, None)
            }
            Artifact::Remote { url, mime } => {
                self.keep_remote(job_id, product, idx, url, mime.as_deref(), budget)
            }
            Artifact::Hosted(_) => Err(KeepError::permanent(
                MEDIA_STORE_FAILED,
                format!("output {idx} is served already; the store keeps none of those"),
            )),
        }
    }

    #[cfg(feature = "http")]
    fn keep_remote(
        &self,
        job_id: &str,
        product: &str,
        idx: usize,
        url: &str,
        announced: Option<&str>,
        budget: Budget,
    ) -> std::result::Result<KeptFile, KeepError> {
        let Budget {
            deadline,
            bytes_max: limit,
        } = budget;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KeepError::transient(format!(
                "keeping output {idx} ran out of its {} ms",
                self.settings.keep_timeout_ms
            )));
        }
        let download = self.fetcher.open(url, left)?;
        if let Some(length) = download.length {
            if length > limit {
                return Err(too_large(limit));
            }
        }
        // The upstream's own type when it names one, else what it answered
        // with; a specific type that is not the product's is refused before
        // the body is read.
        use super::is_generic;
        let announced = if is_generic(announced) {
            download.content_type.clone()
        } else {
            announced.map(str::to_owned)
        };
        if !is_generic(announced.as_deref()) {
            check_type(product, announced.as_deref(), b"")?;
        }
        let mut sink = self.sink(job_id)?;
        let mut body = download.body.take(limit.saturating_add(1));
        let mut chunk = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match body.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(super::fetch::broken_off(&err)),
            };
            if sink.bytes + n as u64 > limit {
                return Err(too_large(limit));
            }
            sink.write(&chunk[..n])?;
        }
        let mime = check_type(product, announced.as_deref(), &sink.head)?;
        self.finish(sink, job_id, idx, mime, Some(url.to_owned()))
    }

    #[cfg(not(feature = "http"))]
    fn keep_remote(
        &self,
        _job_id: &str,
        _product: &str,
        idx: usize,
        _url: &str,
        _announced: Option<&str>,
        _budget: Budget,
    ) -> std::result::Result<KeptFile, KeepError> {
        Err(KeepError::permanent(
            MEDIA_STORE_FAILED,
            format!(
                "output {idx} is at an upstream URL, and this build has no HTTP client \
                 (cargo feature `http`) to download it"
            ),
        ))
    }

    /// A temporary file in `job_id`'s folder.
    fn sink(&self, job_id: &str) -> std::result::Result<Sink<'_>, KeepError> {
        let folder = self.settings.dir.join(job_id);
        fs::create_dir_all(&folder).map_err(|err| local("making the job's folder", &err))?;
        let temp = folder.join(format!("{TEMP_PREFIX}{}", crate::ids::random_id("")));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|err| local("creating a file", &err))?;
        Ok(Sink {
            store: self,
            file: Some(file),
            temp,
            bytes: 0,
            hasher: Sha256::new(),
            head: Vec::with_capacity(SNIFF_BYTES_MAX),
            done: false,
        })
    }

    /// Syncs `sink`'s file and renames it to `<job>/<idx>.<ext>`.
    fn finish(
        &self,
        mut sink: Sink<'_>,
        job_id: &str,
        idx: usize,
        mime: String,
        upstream_url: Option<String>,
    ) -> std::result::Result<KeptFile, KeepError> {
        let name = format!("{idx}.{}", extension(&mime));
        let path = format!("{job_id}/{name}");
        let target = self.settings.dir.join(job_id).join(&name);
        let file = sink.file.take().expect("a sink finishes once");
        file.sync_all()
            .map_err(|err| local("syncing a file", &err))?;
        drop(file);
        // A file of an earlier, unrecorded attempt under the same name is
        // replaced: its bytes leave the count.
        let replaced = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        fs::rename(&sink.temp, &target).map_err(|err| local("renaming a file", &err))?;
        self.release(replaced);
        let bytes = sink.bytes;
        let sha256: [u8; 32] = std::mem::take(&mut sink.hasher).finalize().into();
        sink.done = true;
        Ok(KeptFile {
            path,
            name,
            mime,
            bytes,
            sha256,
            upstream_url,
        })
    }

    /// Counts `bytes` more against the quota, or refuses.
    fn reserve(&self, bytes: u64) -> std::result::Result<(), KeepError> {
        let max = self.settings.store_bytes_max;
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= max)
            })
            .map(|_| ())
            .map_err(|_| {
                KeepError::transient(format!(
                    "the media store is full ({max} bytes); it frees space as kept files expire"
                ))
            })
    }

    /// Counts `bytes` less.
    fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// The folder of a relative kept path, if it is one of ours.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let relative = Path::new(path);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        (plain && relative.components().count() == 2).then(|| self.settings.dir.join(relative))
    }
}

/// What one `keep` may still spend: time, and bytes per file.
#[derive(Debug, Clone, Copy)]
struct Budget {
    // Only downloads (feature `http`) spend time.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    deadline: Instant,
    bytes_max: u64,
}

impl MediaStore for FileMediaStore {
    fn keep(
        &self,
        job_id: &str,
        product: &str,
        artifacts: &[Artifact],
    ) -> std::result::Result<Vec<KeptFile>, KeepError> {
        self.keep_at_most(job_id, product, artifacts, u64::MAX)
    }

    fn keep_at_most(
        &self,
        job_id: &str,
        product: &str,
        artifacts: &[Artifact],
        bytes_max: u64,
    ) -> std::result::Result<Vec<KeptFile>, KeepError> {
        let limit = bytes_max.min(self.settings.file_bytes_max);
        let valid = !job_id.is_empty()
            && job_id.len() <= JOB_ID_CHARS_MAX
            && job_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !job_id.starts_with('.');
        if !valid {
            return Err(KeepError::permanent(
                MEDIA_STORE_FAILED,
                "the job id cannot name a folder",
            ));
        }
        let deadline = Instant::now() + Duration::from_millis(self.settings.keep_timeout_ms as u64);
        let mut kept: Vec<KeptFile> = Vec::with_capacity(artifacts.len());
        for (idx, artifact) in artifacts.iter().enumerate() {
            let budget = Budget {
                deadline,
                bytes_max: limit,
            };
            match self.keep_one(job_id, product, idx, artifact, budget) {
                Ok(file) => kept.push(file),
                Err(err) => {
                    for file in &kept {
                        let _ = self.remove(&file.path);
                    }
                    let _ = fs::remove_dir(self.settings.dir.join(job_id));
                    return Err(err);
                }
            }
        }
        if let Ok(folder) = File::open(self.settings.dir.join(job_id)) {
            // The renames are durable once the folder is synced.
            let _ = folder.sync_all();
        }
        Ok(kept)
    }

    fn keep_timeout_ms(&self) -> i64 {
        self.settings.keep_timeout_ms
    }

    fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.resolve(path)
    }

    fn remove(&self, path: &str) -> std::io::Result<()> {
        let Some(full) = self.resolve(path) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{path} is not a kept file's path"),
            ));
        };
        let bytes = match fs::metadata(&full) {
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        match fs::remove_file(&full) {
            Ok(()) => self.release(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        if let Some(folder) = full.parent() {
            // Only an empty folder goes; a non-empty one stays, silently.
            let _ = fs::remove_dir(folder);
        }
        Ok(())
    }
}

/// A file being written: counted against the quota as it grows, hashed,
/// its head kept for sniffing. Dropped unfinished, it removes its file and
/// gives its bytes back.
struct Sink<'a> {
    store: &'a FileMediaStore,
    file: Option<File>,
    temp: PathBuf,
    bytes: u64,
    hasher: Sha256,
    head: Vec<u8>,
    /// Renamed to its kept name: its bytes stay counted.
    done: bool,
}

impl Sink<'_> {
    fn write(&mut self, chunk: &[u8]) -> std::result::Result<(), KeepError> {
        self.store.reserve(chunk.len() as u64)?;
        self.bytes += chunk.len() as u64;
        let file = self.file.as_mut().expect("an unfinished sink");
        file.write_all(chunk)
            .map_err(|err| local("writing a file", &err))?;
        self.hasher.update(chunk);
        let room = SNIFF_BYTES_MAX.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        Ok(())
    }
}

impl Drop for Sink<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.file = None;
            let _ = fs::remove_file(&self.temp);
            self.store.release(self.bytes);
        }
    }
}

/// The error of an output over the per-file limit.
fn too_large(max: u64) -> KeepError {
    KeepError::permanent(
        OUTPUT_TOO_LARGE,
        format!("the output is larger than {max} bytes"),
    )
}

/// A local I/O failure while keeping: transient (see the module header),
/// a full disk named as such.
fn local(doing: &str, err: &std::io::Error) -> KeepError {
    if err.kind() == std::io::ErrorKind::StorageFull {
        KeepError::transient(format!("{doing} failed: the disk is full"))
    } else {
        KeepError::transient(format!("{doing} failed: {}", err.kind()))
    }
}

/// Removes what interrupted writes left (`.part-*` files, empty folders)
/// and counts the bytes of the kept files.
fn tidy_and_count(dir: &Path) -> std::io::Result<u64> {
    let mut used = 0u64;
    for entry in fs::read_dir(dir)? {
        let folder = entry?.path();
        if !folder.is_dir() {
            continue;
        }
        for file in fs::read_dir(&folder)? {
            let file = file?;
            let partial = file.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
            if partial {
                let _ = fs::remove_file(file.path());
            } else if let Ok(meta) = file.metadata() {
                used = used.saturating_add(meta.len());
            }
        }
        let _ = fs::remove_dir(&folder);
    }
    Ok(used)
}
