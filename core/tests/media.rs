//! The media store: outputs kept on disk whole or not at all, bounded per
//! file and in total, their type checked against the product; remote
//! outputs downloaded from a stand-in (with the `http` feature: 404, 5xx,
//! redirects, oversized, wrong type, timeouts); and the gate's side:
//! serving a kept file through its link, the retention sweep, and
//! `output_expired` after it, time moved by a `ManualClock`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Setup, RYNJER};
use creditgate::media::{
    FileMediaStore, KeepError, KeptFile, MediaSettings, MediaStore, OUTPUT_TOO_LARGE,
    OUTPUT_TYPE_MISMATCH,
};
use creditgate::providers::Artifact;
use creditgate::{Clock, Error, JobStatus, ServedOutput, Synchronous};
use rust_decimal::Decimal;
use serde_json::json;
use sha2::{Digest, Sha256};

const PNG: &[u8] = include_bytes!("../../fixtures/media/sample.png");
const JOB: &str = "job_0123abcd";

fn store_in(dir: &Path, tune: impl FnOnce(&mut MediaSettings)) -> FileMediaStore {
    let mut settings = MediaSettings::new(dir.join("media"));
    tune(&mut settings);
    FileMediaStore::open(settings).expect("open the store")
}

fn inline(bytes: &[u8], mime: &str) -> Artifact {
    Artifact::Inline {
        bytes: bytes.to_vec(),
        mime: mime.to_owned(),
    }
}

fn permanent_code(err: &KeepError) -> &str {
    match err {
        KeepError::Permanent { code, .. } => code,
        KeepError::Transient { .. } => "transient",
    }
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            for inner in files_under(&path) {
                out.push(format!("{}/{inner}", entry.file_name().to_string_lossy()));
            }
        } else {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

#[test]
fn inline_outputs_are_kept_whole_with_their_size_and_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), |_| {});
    let kept = store
        .keep(
            JOB,
            "chat",
            &[
                inline(b"hello", "text/plain"),
                inline(b"again", "text/plain"),
            ],
        )
        .expect("kept");
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0].path, format!("{JOB}/0.txt"));
    assert_eq!(kept[1].name, "1.txt");
    assert_eq!(kept[0].bytes, 5);
    assert_eq!(kept[0].sha256, <[u8; 32]>::from(Sha256::digest(b"hello")));
    assert_eq!(kept[0].upstream_url, None);
    let on_disk = store.local_path(&kept[0].path).expect("ours");
    assert_eq!(std::fs::read(on_disk).expect("read"), b"hello");
    assert_eq!(
        files_under(&dir.path().join("media")),
        [format!("{JOB}/0.txt"), format!("{JOB}/1.txt")],
        "no temporary file is left"
    );
    assert_eq!(store.used_bytes(), 10);
    // A store opened again counts what it holds.
    drop(store);
    assert_eq!(store_in(dir.path(), |_| {}).used_bytes(), 10);
}

#[test]
fn a_failing_output_leaves_nothing_of_the_call_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), |s| s.file_bytes_max = 1_000);
    let err = store
        .keep(
            JOB,
            "image",
            &[inline(PNG, "image/png"), inline(b"<html>", "text/html")],
        )
        .expect_err("the second is not an image");
    assert_eq!(permanent_code(&err), OUTPUT_TYPE_MISMATCH);
    assert!(files_under(&dir.path().join("media")).is_empty());
    assert!(
        !dir.path().join("media").join(JOB).exists(),
        "no empty folder"
    );
    assert_eq!(store.used_bytes(), 0);

    let big = vec![0u8; 1_001];
    let err = store
        .keep(JOB, "image", &[inline(&big, "image/png")])
        .expect_err("over the per-file limit");
    assert_eq!(permanent_code(&err), OUTPUT_TOO_LARGE);
    assert!(files_under(&dir.path().join("media")).is_empty());

    // A provider instance's own `download_bytes_max` bounds it further.
    let mut png = PNG.to_vec();
    png.resize(600, 0);
    let err = store
        .keep_at_most(JOB, "image", &[inline(&png, "image/png")], 500)
        .expect_err("over the instance's limit");
    assert_eq!(permanent_code(&err), OUTPUT_TOO_LARGE);
    store
        .keep_at_most(JOB, "image", &[inline(&png, "image/png")], 700)
        .expect("within both limits");
}

#[test]
fn a_full_store_is_transient_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), |s| {
        s.file_bytes_max = 1_000;
        s.store_bytes_max = 1_500;
    });
    store
        .keep("job_first", "chat", &[inline(&[b'a'; 1_000], "text/plain")])
        .expect("fits");
    let err = store
        .keep(JOB, "chat", &[inline(&[b'b'; 600], "text/plain")])
        .expect_err("the quota is reached");
    assert!(matches!(err, KeepError::Transient { .. }), "{err:?}");
    assert_eq!(store.used_bytes(), 1_000);
    assert_eq!(files_under(&dir.path().join("media")), ["job_first/0.txt"]);
    // Once space comes back, the same output fits.
    store.remove("job_first/0.txt").expect("removed");
    assert!(!dir.path().join("media/job_first").exists());
    store
        .keep(JOB, "chat", &[inline(&[b'b'; 600], "text/plain")])
        .expect("fits now");
}

#[test]
fn settings_out_of_bounds_are_refused_and_paths_stay_inside_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = FileMediaStore::open(MediaSettings {
        store_bytes_max: 10,
        file_bytes_max: 11,
        ..MediaSettings::new(dir.path().join("m"))
    })
    .expect_err("a file larger than the store");
    assert_eq!(err.code(), "invalid_request");
    let store = store_in(dir.path(), |_| {});
    for bad in ["../x/0.png", "/etc/passwd", "a/b/c", "x"] {
        assert_eq!(store.local_path(bad), None, "{bad}");
        assert!(store.remove(bad).is_err(), "{bad}");
    }
    let err = store
        .keep("../escape", "chat", &[inline(b"x", "text/plain")])
        .expect_err("not a folder name");
    assert!(matches!(err, KeepError::Permanent { .. }));
    assert_eq!(
        MediaSettings::beside(Path::new("/var/lib/cg/gate.db")).dir,
        Path::new("/var/lib/cg/media")
    );
}

/// A gate on a `ManualClock` over a fresh database with the Rynjer
/// catalog and a media store in the same folder.
struct MediaGate {
    fx: common::Fixture,
    store: Arc<FileMediaStore>,
}

const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

fn media_gate() -> MediaGate {
    let fx = common::open(Setup {
        synchronous: Synchronous::Normal,
        catalog: Some(RYNJER),
        ..Setup::default()
    });
    let store = Arc::new(store_in(fx.dir.path(), |_| {}));
    let common::Fixture {
        dir,
        path,
        clock,
        gate,
        setup,
    } = fx;
    let gate = gate
        .with_media_store(store.clone(), RETENTION_MS)
        .expect("a retention in bounds");
    MediaGate {
        fx: common::Fixture {
            dir,
            path,
            clock,
            gate,
            setup,
        },
        store,
    }
}

/// A succeeded fixture job whose one output is kept by `keep` (given the
/// job id) and recorded as the worker will record it: its output has no
/// sample file. Returns (job id, output token, the kept files).
fn succeeded_with_kept(
    mg: &MediaGate,
    keep: impl FnOnce(&str) -> Vec<KeptFile>,
) -> (String, String, Vec<KeptFile>) {
    let gate = &mg.fx.gate;
    let account = common::account(gate, "agent", Decimal::from(100));
    let submitted = gate
        .submit(
            &account,
            &json!({"request_id": "r1", "model": "nano-banana-pro", "prompt": "a lighthouse"}),
        )
        .expect("submit");
    let id = submitted.job.id.clone();
    for _ in 0..200 {
        gate.run_due_work(64).expect("step");
        if gate.job(&id).expect("job").status.is_terminal() {
            break;
        }
        mg.fx.clock.advance(Duration::from_secs(1));
    }
    let job = gate.job(&id).expect("job");
    assert_eq!(job.status, JobStatus::Succeeded);
    let kept = keep(&id);
    let url = format!("{}/0/{}", gate.output_url_base(&job), kept[0].name);
    mg.fx
        .raw()
        .execute(
            "UPDATE jobs SET outputs = ?1 WHERE id = ?2",
            rusqlite::params![json!([{"url": url, "mime": kept[0].mime}]).to_string(), id],
        )
        .expect("tamper: a kept output");
    gate.record_kept_for_tests(&id, &kept).expect("recorded");
    (id, job.output_token, kept)
}

#[test]
fn a_kept_output_is_served_until_its_retention_passes_then_swept_and_gone() {
    let mg = media_gate();
    let gate = &mg.fx.gate;
    let (id, token, _) = succeeded_with_kept(&mg, |id| {
        mg.store
            .keep(id, "image", &[inline(PNG, "image/png")])
            .expect("kept")
    });
    let recorded_at = mg.fx.clock.now();

    let kept = gate.kept_output(&id, &token, 0).expect("served");
    assert_eq!(kept.mime, "image/png");
    assert_eq!(kept.bytes, PNG.len() as u64);
    assert_eq!(std::fs::read(&kept.path).expect("on disk"), PNG);
    assert_eq!(kept.expires_at, recorded_at + RETENTION_MS);

    // Another token, another index, an unknown job: not found.
    assert_eq!(common::code(gate.kept_output(&id, "nope", 0)), "not_found");
    assert_eq!(common::code(gate.kept_output(&id, &token, 1)), "not_found");
    assert_eq!(
        common::code(gate.kept_output("job_x", &token, 0)),
        "not_found"
    );

    // Nothing is due before the retention passes.
    mg.fx
        .clock
        .advance(Duration::from_millis(RETENTION_MS as u64 - 1));
    assert_eq!(gate.sweep_media(100).expect("sweep"), 0);
    assert!(gate.kept_output(&id, &token, 0).is_ok(), "still served");
    mg.fx.clock.advance(Duration::from_millis(1));
    // Past it, the link is gone even before the sweep ran...
    let err = gate.kept_output(&id, &token, 0).expect_err("expired");
    assert!(
        matches!(err, Error::OutputExpired { index: 0, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "output_expired");
    assert!(err.to_string().contains("retention period"), "{err}");
    // ...and the sweep removes the file, its folder, and marks the row.
    assert_eq!(gate.sweep_media(100).expect("sweep"), 1);
    assert!(!kept.path.exists());
    assert!(!kept.path.parent().expect("folder").exists());
    let rows = gate.kept_files(&id).expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].removed_at, Some(mg.fx.clock.now()));
    assert_eq!(mg.store.used_bytes(), 0);
    assert_eq!(
        common::code(gate.kept_output(&id, &token, 0)),
        "output_expired"
    );
    assert_eq!(gate.sweep_media(100).expect("again"), 0, "once");
    common::assert_verified(gate);
}

#[test]
fn the_sweep_takes_already_missing_files_in_its_stride() {
    let mg = media_gate();
    let (id, _, kept) = succeeded_with_kept(&mg, |id| {
        mg.store
            .keep(id, "image", &[inline(PNG, "image/png")])
            .expect("kept")
    });
    // The operator deleted the file by hand.
    mg.store.remove(&kept[0].path).expect("removed");
    mg.fx
        .clock
        .advance(Duration::from_millis(RETENTION_MS as u64 + 1));
    assert_eq!(mg.fx.gate.sweep_media(100).expect("sweep"), 1);
    assert!(mg.fx.gate.kept_files(&id).expect("rows")[0]
        .removed_at
        .is_some());
}

#[test]
fn fixture_outputs_are_still_served_from_the_binary() {
    let mg = media_gate();
    let gate = &mg.fx.gate;
    let account = common::account(gate, "agent", Decimal::from(100));
    let job = gate
        .submit(
            &account,
            &json!({"request_id": "r1", "model": "nano-banana-pro", "prompt": "x"}),
        )
        .expect("submit")
        .job;
    for _ in 0..200 {
        gate.run_due_work(64).expect("step");
        mg.fx.clock.advance(Duration::from_secs(1));
    }
    let job = gate.job(&job.id).expect("job");
    assert_eq!(job.status, JobStatus::Succeeded);
    match gate
        .served_output(&job.id, &job.output_token, 0)
        .expect("served")
    {
        ServedOutput::Sample(file) => assert_eq!(file.mime, "image/png"),
        other => panic!("a sample, not {other:?}"),
    }
    assert_eq!(
        common::code(gate.kept_output(&job.id, &job.output_token, 0)),
        "not_found"
    );
}

#[test]
fn a_retention_out_of_bounds_is_refused() {
    let fx = common::fresh();
    let store = Arc::new(store_in(fx.dir.path(), |_| {}));
    let err = fx.gate.with_media_store(store, 0).expect_err("zero");
    assert_eq!(err.code(), "invalid_request");
}

#[cfg(feature = "http")]
mod remote {
    //! Downloads from a stand-in upstream.

    use super::*;
    use creditgate::media::OUTPUT_UNAVAILABLE;
    use creditgate_standins::{Reply, StandIn};

    fn remote(url: String, mime: Option<&str>) -> Artifact {
        Artifact::Remote {
            url,
            mime: mime.map(str::to_owned),
        }
    }

    /// A stand-in serving a PNG at `/ok.png`, an octet-stream PNG at
    /// `/generic`, HTML at `/page`, 404 at `/missing`, 410 at `/gone`, 503
    /// at `/busy`, 4 KiB at `/big`, a redirect chain `/hop/N` → … → `/ok.png`,
    /// a slow answer at `/slow`.
    fn upstream() -> StandIn {
        StandIn::start(4, |seen| {
            let path = seen.url.split('?').next().unwrap_or("");
            match path {
                "/ok.png" => Reply::bytes(200, "image/png", PNG.to_vec()),
                "/generic" => Reply::bytes(200, "application/octet-stream", PNG.to_vec()),
                "/bare" => Reply {
                    status: 200,
                    headers: Vec::new(),
                    body: PNG.to_vec(),
                    delay: Duration::ZERO,
                },
                "/page" => Reply::bytes(200, "text/html", b"<html></html>".to_vec()),
                "/missing" => Reply::bytes(404, "text/plain", b"no".to_vec()),
                "/gone" => Reply::bytes(410, "text/plain", b"expired".to_vec()),
                "/busy" => Reply::bytes(503, "text/plain", b"later".to_vec()),
                "/big" => Reply::bytes(200, "image/png", vec![0x89; 4_096]),
                "/slow" => {
                    Reply::bytes(200, "image/png", PNG.to_vec()).after(Duration::from_millis(1_500))
                }
                _ => match path
                    .strip_prefix("/hop/")
                    .and_then(|n| n.parse::<u32>().ok())
                {
                    Some(0) => {
                        Reply::bytes(302, "text/plain", Vec::new()).header("Location", "/ok.png")
                    }
                    Some(n) => Reply::bytes(302, "text/plain", Vec::new())
                        .header("Location", &format!("/hop/{}", n - 1)),
                    None => Reply::bytes(404, "text/plain", Vec::new()),
                },
            }
        })
    }

    fn keep_one(
        store: &FileMediaStore,
        product: &str,
        url: String,
        mime: Option<&str>,
    ) -> Result<Vec<KeptFile>, KeepError> {
        store.keep(JOB, product, &[remote(url, mime)])
    }

    #[test]
    fn a_remote_output_is_downloaded_without_credentials_and_its_url_kept() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |_| {});
        let url = format!("{}/ok.png?sig=abc", up.base_url());
        let kept = keep_one(&store, "image", url.clone(), None).expect("kept");
        assert_eq!(kept[0].mime, "image/png");
        assert_eq!(kept[0].name, "0.png");
        assert_eq!(kept[0].bytes, PNG.len() as u64);
        assert_eq!(kept[0].sha256, <[u8; 32]>::from(Sha256::digest(PNG)));
        assert_eq!(kept[0].upstream_url.as_deref(), Some(url.as_str()));
        let path = store.local_path(&kept[0].path).expect("ours");
        assert_eq!(std::fs::read(path).expect("read"), PNG);
        let seen = up.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("authorization"), None);
        assert_eq!(seen[0].header("cookie"), None);
    }

    #[test]
    fn a_generic_or_missing_content_type_is_sniffed() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |_| {});
        for path in ["/generic", "/bare"] {
            let kept =
                keep_one(&store, "image", format!("{}{path}", up.base_url()), None).expect(path);
            assert_eq!(
                (kept[0].mime.as_str(), kept[0].name.as_str()),
                ("image/png", "0.png")
            );
        }
        // The same PNG is not a video, whatever the URL says.
        let err = keep_one(&store, "video", format!("{}/generic", up.base_url()), None)
            .expect_err("a png for a video");
        assert_eq!(permanent_code(&err), OUTPUT_TYPE_MISMATCH);
    }

    #[test]
    fn a_missing_or_expired_upstream_file_is_output_unavailable() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |_| {});
        for path in ["/missing", "/gone"] {
            let err = keep_one(&store, "image", format!("{}{path}", up.base_url()), None)
                .expect_err(path);
            assert_eq!(permanent_code(&err), OUTPUT_UNAVAILABLE, "{path}");
        }
        assert!(files_under(&dir.path().join("media")).is_empty());
    }

    #[test]
    fn an_oversized_output_is_output_too_large_and_leaves_no_file() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |s| s.file_bytes_max = 1_024);
        let err = store
            .keep(
                JOB,
                "image",
                &[
                    inline(&PNG[..100.min(PNG.len())], "image/png"),
                    remote(format!("{}/big", up.base_url()), Some("image/png")),
                ],
            )
            .expect_err("over the limit");
        assert_eq!(permanent_code(&err), OUTPUT_TOO_LARGE);
        assert!(files_under(&dir.path().join("media")).is_empty());
        assert_eq!(store.used_bytes(), 0);
    }

    /// A one-shot server answering `body` with no `Content-Length` (the
    /// body ends when the connection closes), so only the streamed count
    /// can stop it.
    fn unannounced_length(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/stream", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut head = [0u8; 4_096];
            let _ = socket.read(&mut head);
            let _ = socket.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n",
            );
            let _ = socket.write_all(&body);
        });
        (url, server)
    }

    #[test]
    fn a_body_of_unannounced_length_is_cut_at_the_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |s| s.file_bytes_max = 1_024);
        let mut body = PNG[..16].to_vec();
        body.resize(64 * 1_024, 0);
        let (url, server) = unannounced_length(body);
        let err = keep_one(&store, "image", url, None).expect_err("cut");
        assert_eq!(permanent_code(&err), OUTPUT_TOO_LARGE);
        assert!(files_under(&dir.path().join("media")).is_empty());
        assert_eq!(store.used_bytes(), 0);
        let _ = server.join();
        // Under the limit, the same framing is kept whole.
        let (url, server) = unannounced_length(PNG[..16].to_vec());
        let kept = keep_one(&store, "image", url, None).expect("kept");
        assert_eq!(kept[0].bytes, 16);
        let _ = server.join();
    }

    #[test]
    fn a_type_that_is_not_the_products_is_output_type_mismatch() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |_| {});
        let err = keep_one(&store, "image", format!("{}/page", up.base_url()), None)
            .expect_err("html is no image");
        assert_eq!(permanent_code(&err), OUTPUT_TYPE_MISMATCH);
        // The upstream's own claim is checked before the body is read.
        let err = keep_one(
            &store,
            "music",
            format!("{}/ok.png", up.base_url()),
            Some("image/png"),
        )
        .expect_err("a png for music");
        assert_eq!(permanent_code(&err), OUTPUT_TYPE_MISMATCH);
        assert!(files_under(&dir.path().join("media")).is_empty());
    }

    #[test]
    fn a_5xx_or_an_unreachable_host_is_transient() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |_| {});
        let err =
            keep_one(&store, "image", format!("{}/busy", up.base_url()), None).expect_err("503");
        assert!(matches!(err, KeepError::Transient { .. }), "{err:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let err = keep_one(
            &store,
            "image",
            format!("http://127.0.0.1:{port}/x.png"),
            None,
        )
        .expect_err("refused");
        assert!(matches!(err, KeepError::Transient { .. }), "{err:?}");
    }

    #[test]
    fn a_download_slower_than_the_keep_budget_is_transient() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |s| s.keep_timeout_ms = 300);
        let err = keep_one(&store, "image", format!("{}/slow", up.base_url()), None)
            .expect_err("too slow");
        assert!(matches!(err, KeepError::Transient { .. }), "{err:?}");
        assert!(files_under(&dir.path().join("media")).is_empty());
    }

    #[test]
    fn a_body_that_stalls_midway_is_cut_by_the_keep_budget() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/stall", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().expect("accept");
            let mut head = [0u8; 4_096];
            let _ = socket.read(&mut head);
            let _ = socket.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n",
            );
            let _ = socket.write_all(&PNG[..16]);
            let _ = socket.flush();
            // Hold the connection open past the client's budget.
            std::thread::sleep(Duration::from_millis(1_000));
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |s| s.keep_timeout_ms = 300);
        let started = std::time::Instant::now();
        let err = keep_one(&store, "image", url, None).expect_err("stalled");
        assert!(matches!(err, KeepError::Transient { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_millis(800),
            "cut by the budget, not by the server closing: {:?}",
            started.elapsed()
        );
        assert!(files_under(&dir.path().join("media")).is_empty());
        assert_eq!(store.used_bytes(), 0);
        let _ = server.join();
    }

    #[test]
    fn redirects_are_followed_up_to_five() {
        let up = upstream();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), |_| {});
        let kept = keep_one(&store, "image", format!("{}/hop/4", up.base_url()), None)
            .expect("five redirects");
        assert_eq!(kept[0].bytes, PNG.len() as u64);
        assert_eq!(up.count("GET", "/hop/"), 5);
        assert_eq!(up.count("GET", "/ok.png"), 1);
        let err =
            keep_one(&store, "image", format!("{}/hop/5", up.base_url()), None).expect_err("six");
        assert_eq!(permanent_code(&err), OUTPUT_UNAVAILABLE);
    }
}

#[cfg(not(feature = "http"))]
#[test]
fn without_an_http_client_a_remote_output_is_refused_honestly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path(), |_| {});
    let err = store
        .keep(
            JOB,
            "image",
            &[Artifact::Remote {
                url: "https://cdn.example/a.png".into(),
                mime: Some("image/png".into()),
            }],
        )
        .expect_err("no client in this build");
    assert_eq!(permanent_code(&err), creditgate::media::MEDIA_STORE_FAILED);
    assert!(err.to_string().contains("`http`"), "{err}");
}
