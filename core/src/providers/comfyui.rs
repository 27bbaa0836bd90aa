//! The ComfyUI adapter: a hobbyist's own GPU box running ComfyUI. It owns
//! the instance's workflow templates (loaded and checked once, at
//! construction), their placeholder substitution (a pure function), and
//! the calls to ComfyUI's HTTP API: `POST /prompt`, `GET /history/{id}`,
//! `GET /queue`, `POST /queue {"delete"}`, `POST /interrupt`,
//! `GET /system_stats`; outputs are named as `GET /view` URLs. Owns no
//! table.
//!
//! ## Templates
//! The catalog's upstream model names a template: the file
//! `<workflows_dir>/<upstream model>.json`, a graph in ComfyUI's "API
//! format" (node id -> `{"class_type", "inputs"}`, as "Save (API)" exports
//! it). `workflows_dir` is taken as given: the appliance resolves a relative
//! one against the providers file's folder before constructing; a relative
//! path left here is relative to the process's working directory. A string
//! value that is *wholly* a placeholder is replaced:
//!
//! | placeholder | becomes |
//! | --- | --- |
//! | `"{{prompt}}"` | the prompt, as a JSON string (empty if none) |
//! | `"{{negative_prompt}}"` | `""` (requests carry no negative prompt yet) |
//! | `"{{seed}}"` | the job's seed, a number |
//! | `"{{width:1024}}"`, `"{{height:1024}}"` | numbers: the request's `resolution` when it reads `WxH`; else the default scaled to the request's `aspect_ratio` (same pixel count, multiples of 64); else the default |
//! | `"{{image}}"` | the first input image's URL, as a string |
//!
//! Values are inserted as JSON values, never spliced into JSON text, so a
//! prompt with quotes or braces stays one string. A placeholder inside a
//! longer string, an unknown placeholder or a width/height without its
//! default refuses the template at load. `{{image}}` hands ComfyUI the
//! input's URL: creditgate does not download inputs and upload them
//! (`POST /upload/image`), so an image-to-image template needs a node that
//! loads an image from a URL; a job without an input image for a template
//! that needs one fails with `unsupported_input` before anything is sent.
//!
//! ## Ids, reconciliation and cancel
//! Every submission carries a `prompt_id` derived from our job id (a
//! lowercase, UUID-shaped digest: newer servers check the id is a UUID;
//! creditgate's job ids are not). ComfyUI honours a client `prompt_id`
//! since v0.3.45 ([`CLIENT_PROMPT_ID_SINCE`]); older servers ignore it and
//! answer their own. The version comes from `GET /system_stats`
//! (`system.comfyui_version`), asked once per instance and cached (a
//! `check()` reads it afresh: an upgraded box is seen after a check or a
//! restart); an unreadable version counts as old. History is kept by
//! ComfyUI for a bounded number of prompts, so a prompt polled or
//! reconciled long after it finished may read as gone. On a server that honours our id,
//! [`Provider::reconcile`] asks `GET /history/{id}` and `GET /queue` and
//! answers `Found` or `Absent`; on an older one, `Unsupported`. Submission
//! is *not* idempotent: a server that does not deduplicate by `prompt_id`
//! would run a resubmission twice.
//!
//! A cancel never stops someone else's prompt: it reads `GET /queue`
//! first. Ours pending: `POST /queue {"delete": [id]}`. Ours running:
//! `POST /interrupt {"prompt_id": id}`, which servers since
//! [`INTERRUPT_PROMPT_ID_SINCE`] apply only to that prompt; an older server
//! interrupts whatever runs, so it is sent only when the queue showed ours
//! running (a prompt finishing between the two calls is the one race left,
//! and only on old servers). Ours not in the queue: nothing is sent.
//!
//! ## Error mapping
//! | upstream | ours |
//! | --- | --- |
//! | `POST /prompt` 400 (`error` a string on old servers, an object `{type, message, details}` on newer ones, plus `node_errors`) | Permanent `upstream_rejected`, summarised as node class + message |
//! | no template for the upstream model | Permanent `model_unavailable` (naming the template, not the path) |
//! | `{{image}}` without an input image | Permanent `unsupported_input` |
//! | 401 / 403 (a proxy in front) | Permanent `provider_auth_failed` |
//! | 408, 409, 425, 429, 5xx | NotSent (honouring `Retry-After`) |
//! | submit answered 2xx without a readable `prompt_id` | OutcomeUnknown |
//! | history `status_str: "error"` | Failed `generation_failed` (the `execution_error` summarised) |
//! | finished without an output file | Failed `generation_failed` |
//! | accepted, then in neither history nor queue | Abandoned ("deleted from the queue") |
//!
//! ComfyUI has no authentication of its own. When the instance names a
//! `credential_env`, its value is sent as `Authorization: Bearer ...`, for
//! boxes behind an authenticating reverse proxy; the same origin's `/view`
//! URLs then need it too, which the shared client gives only to that
//! origin.
//!
//! One box runs one prompt at a time: the instance's `concurrency` is taken
//! as configured (the providers file's default is for cloud APIs), and
//! operators should set 1 or 2 for a ComfyUI box.
//!
//! Not confirmed against a live server (marked where used): the exact
//! release that first took `/interrupt {"prompt_id"}` (PR #9607, merged
//! around v0.3.56; v0.3.57 is assumed), and that every newer server
//! requires a UUID-shaped `prompt_id` (the derived id satisfies both).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::config::{Credential, ProviderConfig};
use super::http::{summary, Answer, Auth, HttpClient, Method};
use super::{
    check_task_id, Artifact, CheckReport, Completion, PollStatus, Provider, ProviderError,
    ProviderJob, Reconciled, Submission, PROVIDER_OUTPUTS_MAX,
};
use crate::error::{Error, Result};

/// The largest workflow template file, in bytes.
pub const TEMPLATE_BYTES_MAX: u64 = 1024 * 1024;
/// Workflow templates one instance may load, at most.
pub const TEMPLATES_MAX: usize = 256;
/// The longest template name (the file name without `.json`), in
/// characters.
pub const TEMPLATE_NAME_CHARS_MAX: usize = 128;
/// The smallest width or height a template may be given, in pixels.
pub const SIZE_PX_MIN: u32 = 16;
/// The largest width or height a template may be given, in pixels.
pub const SIZE_PX_MAX: u32 = 16_384;
/// The longest output file name or subfolder accepted from ComfyUI, in
/// characters.
pub const OUTPUT_NAME_CHARS_MAX: usize = 512;
/// Node errors summarised in one refusal, at most.
pub const NODE_ERRORS_SHOWN_MAX: usize = 3;
/// The first ComfyUI release that honours a client `prompt_id` in
/// `POST /prompt` (Krita AI Diffusion's "Please update ComfyUI to 0.3.45
/// or later" when it started sending its own ids).
pub const CLIENT_PROMPT_ID_SINCE: Version = Version(0, 3, 45);
/// The first ComfyUI release assumed to interrupt only the named prompt on
/// `POST /interrupt {"prompt_id"}` (PR #9607, merged at the end of August
/// 2025; the exact release is not confirmed, so the next after v0.3.56).
pub const INTERRUPT_PROMPT_ID_SINCE: Version = Version(0, 3, 57);

/// A ComfyUI release number, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Reads `0.3.45`, `v0.3.45` or `0.3.45-dev+abc` (suffixes dropped); a
    /// missing patch reads as 0. Anything else is `None`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text.split(['-', '+', ' ']).next().unwrap_or("");
        let mut parts = core.split('.');
        let mut number = |required: bool| -> Option<u32> {
            match parts.next() {
                Some(part) => part.parse().ok(),
                None if required => None,
                None => Some(0),
            }
        };
        let version = Version(number(true)?, number(true)?, number(false)?);
        if parts.next().is_some() {
            return None;
        }
        Some(version)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A placeholder a template may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{{prompt}}`.
    Prompt,
    /// `{{negative_prompt}}`.
    NegativePrompt,
    /// `{{seed}}`.
    Seed,
    /// `{{width:N}}`, with its default.
    Width(u32),
    /// `{{height:N}}`, with its default.
    Height(u32),
    /// `{{image}}`.
    Image,
}

/// What a string value of a template is: a placeholder, plain text, or a
/// mistake (why).
fn placeholder(text: &str) -> std::result::Result<Option<Placeholder>, String> {
    let Some(inner) = text
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
    else {
        if text.contains("{{") && text.contains("}}") {
            return Err(format!(
                "\"{}\" holds a placeholder inside a longer string; a placeholder must be \
                 the whole string value",
                summary(text)
            ));
        }
        return Ok(None);
    };
    let (name, default) = match inner.split_once(':') {
        Some((name, default)) => (name.trim(), Some(default.trim())),
        None => (inner.trim(), None),
    };
    let size = |default: Option<&str>| -> std::result::Result<u32, String> {
        let default = default
            .ok_or_else(|| format!("{{{{{name}}}}} needs a default, as in {{{{{name}:1024}}}}"))?;
        match default.parse::<u32>() {
            Ok(px) if (SIZE_PX_MIN..=SIZE_PX_MAX).contains(&px) => Ok(px),
            _ => Err(format!(
                "{{{{{name}:{}}}}}: the default must be {SIZE_PX_MIN} to {SIZE_PX_MAX} pixels",
                summary(default)
            )),
        }
    };
    let found = match (name, default) {
        ("prompt", None) => Placeholder::Prompt,
        ("negative_prompt", None) => Placeholder::NegativePrompt,
        ("seed", None) => Placeholder::Seed,
        ("image", None) => Placeholder::Image,
        ("width", default) => Placeholder::Width(size(default)?),
        ("height", default) => Placeholder::Height(size(default)?),
        _ => {
            return Err(format!(
                "unknown placeholder \"{}\" (prompt, negative_prompt, seed, width, height, image)",
                summary(text)
            ))
        }
    };
    Ok(Some(found))
}

/// A checked workflow template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    graph: Map<String, Value>,
    needs_image: bool,
}

impl Template {
    /// Checks a template's text: a JSON object of nodes, each an object
    /// with a string `class_type` and an object `inputs`, every placeholder
    /// well formed. The error says what is wrong, without the text.
    pub fn parse(text: &str) -> std::result::Result<Template, String> {
        let value: Value = serde_json::from_str(text).map_err(|err| format!("not JSON ({err})"))?;
        let Value::Object(graph) = value else {
            return Err("not a JSON object of nodes (ComfyUI's API format)".to_owned());
        };
        if graph.is_empty() {
            return Err("has no nodes".to_owned());
        }
        for (id, node) in &graph {
            let id = summary(id);
            let class = node.get("class_type").and_then(Value::as_str);
            let inputs = node.get("inputs").map(Value::is_object);
            if class.is_none_or(|class| class.trim().is_empty()) || inputs != Some(true) {
                return Err(format!(
                    "node {id} is not {{\"class_type\": ..., \"inputs\": {{...}}}} \
                     (export the workflow with \"Save (API)\")"
                ));
            }
        }
        let mut needs_image = false;
        let mut problem = None;
        visit_strings(
            &Value::Object(graph.clone()),
            &mut |text| match placeholder(text) {
                Ok(Some(Placeholder::Image)) => needs_image = true,
                Ok(_) => {}
                Err(why) => {
                    problem.get_or_insert(why);
                }
            },
        );
        if let Some(problem) = problem {
            return Err(problem);
        }
        Ok(Template { graph, needs_image })
    }

    /// Whether the template takes an input image (`{{image}}`).
    pub fn needs_image(&self) -> bool {
        self.needs_image
    }

    /// The graph, placeholders unfilled.
    pub fn graph(&self) -> &Map<String, Value> {
        &self.graph
    }
}

fn visit_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| visit_strings(item, visit)),
        Value::Object(map) => map.values().for_each(|item| visit_strings(item, visit)),
        _ => {}
    }
}

/// What fills a template's placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill<'a> {
    /// The prompt.
    pub prompt: &'a str,
    /// The seed.
    pub seed: i64,
    /// The request's `resolution`, if any (`"832x1216"` sets the size).
    pub resolution: Option<&'a str>,
    /// The request's `aspect_ratio`, if any (`"16:9"`).
    pub aspect_ratio: Option<&'a str>,
    /// The first input image's URL, if any.
    pub image_url: Option<&'a str>,
}

/// Reads `WxH` (or `W*H`) within the size bounds.
fn explicit_size(resolution: &str) -> Option<(u32, u32)> {
    let (w, h) = resolution
        .trim()
        .split_once(['x', 'X', '*', '×'])
        .map(|(w, h)| (w.trim().parse::<u32>().ok(), h.trim().parse::<u32>().ok()))?;
    let (w, h) = (w?, h?);
    let bounded = |px: u32| (SIZE_PX_MIN..=SIZE_PX_MAX).contains(&px);
    (bounded(w) && bounded(h)).then_some((w, h))
}

/// Scales `(width, height)` to the aspect ratio `a:b`, keeping about the
/// same number of pixels, each side a multiple of 64 within the bounds.
fn scaled_to_ratio(default: (u32, u32), ratio: &str) -> Option<(u32, u32)> {
    let (a, b) = ratio.trim().split_once(':')?;
    let (a, b) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    if a == 0 || b == 0 || a > 100 || b > 100 {
        return None;
    }
    let area = u64::from(default.0) * u64::from(default.1);
    // width = sqrt(area * a / b), in integers: the largest w with
    // w * w * b <= area * a.
    let target = area * a;
    let mut width = ((target / b) as f64).sqrt() as u64;
    while width * width * b > target {
        width -= 1;
    }
    while (width + 1) * (width + 1) * b <= target {
        width += 1;
    }
    let height = width * b / a;
    let round = |px: u64| -> u32 {
        let px = ((px + 32) / 64 * 64).max(64);
        px.clamp(u64::from(SIZE_PX_MIN), u64::from(SIZE_PX_MAX)) as u32
    };
    Some((round(width), round(height)))
}

/// The template's graph with every placeholder replaced by a JSON value
/// (pure). `{{image}}` without an image is refused with `unsupported_input`.
pub fn substitute(
    template: &Template,
    fill: &Fill<'_>,
) -> std::result::Result<Value, ProviderError> {
    if template.needs_image && fill.image_url.is_none() {
        return Err(ProviderError::permanent(
            "unsupported_input",
            "this model's workflow needs an input image and the request has none",
        ));
    }
    let mut graph = Value::Object(template.graph.clone());
    replace(&mut graph, fill);
    Ok(graph)
}

fn size_for(fill: &Fill<'_>, default_w: Option<u32>, default_h: Option<u32>) -> Option<(u32, u32)> {
    if let Some(size) = fill.resolution.and_then(explicit_size) {
        return Some(size);
    }
    let (w, h) = (default_w?, default_h?);
    fill.aspect_ratio
        .and_then(|ratio| scaled_to_ratio((w, h), ratio))
        .or(Some((w, h)))
}

fn replace(value: &mut Value, fill: &Fill<'_>) {
    // The size needs both defaults: collect them first.
    let mut defaults = (None, None);
    visit_strings(value, &mut |text| match placeholder(text) {
        Ok(Some(Placeholder::Width(px))) => defaults.0 = Some(px),
        Ok(Some(Placeholder::Height(px))) => defaults.1 = Some(px),
        _ => {}
    });
    let size = size_for(fill, defaults.0, defaults.1);
    replace_with(value, fill, size);
}

fn replace_with(value: &mut Value, fill: &Fill<'_>, size: Option<(u32, u32)>) {
    match value {
        Value::String(text) => {
            let Ok(Some(found)) = placeholder(text) else {
                return;
            };
            *value = match found {
                Placeholder::Prompt => Value::String(fill.prompt.to_owned()),
                Placeholder::NegativePrompt => Value::String(String::new()),
                // ComfyUI's seeds are unsigned 64-bit: the same bits.
                Placeholder::Seed => json!(fill.seed as u64),
                Placeholder::Width(default) => json!(size.map_or(default, |(w, _)| w)),
                Placeholder::Height(default) => json!(size.map_or(default, |(_, h)| h)),
                Placeholder::Image => Value::String(fill.image_url.unwrap_or("").to_owned()),
            };
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_with(item, fill, size)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| replace_with(item, fill, size)),
        _ => {}
    }
}

/// Whether `name` may name a template: 1 to [`TEMPLATE_NAME_CHARS_MAX`]
/// letters, digits, `.`, `_` or `-`, not starting with a dot (so no path
/// separator, no `..`).
pub fn is_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= TEMPLATE_NAME_CHARS_MAX
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Loads every `*.json` template in `dir` (other files are skipped), each
/// checked; a bad one refuses the whole folder, naming the file.
pub fn load_templates(dir: &Path, field: &str) -> Result<BTreeMap<String, Template>> {
    let entries = std::fs::read_dir(dir).map_err(|err| {
        Error::invalid(
            field,
            format!(
                "the workflow folder {} cannot be read: {err}",
                dir.display()
            ),
        )
    })?;
    let mut templates = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|err| {
            Error::invalid(
                field,
                format!("the workflow folder cannot be listed: {err}"),
            )
        })?;
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".json"))
        else {
            continue;
        };
        if !path.is_file() {
            continue;
        }
        let file = format!("{name}.json");
        if !is_template_name(name) {
            return Err(Error::invalid(
                field,
                format!(
                    "workflow {} has a name that cannot be a model id (letters, digits, \
                     '.', '_', '-'; at most {TEMPLATE_NAME_CHARS_MAX})",
                    summary(&file)
                ),
            ));
        }
        if templates.len() == TEMPLATES_MAX {
            return Err(Error::invalid(
                field,
                format!("the workflow folder holds more than {TEMPLATES_MAX} templates"),
            ));
        }
        let bytes = entry.metadata().map(|meta| meta.len()).unwrap_or(u64::MAX);
        if bytes > TEMPLATE_BYTES_MAX {
            return Err(Error::invalid(
                field,
                format!("workflow {file} is larger than {TEMPLATE_BYTES_MAX} bytes"),
            ));
        }
        // Read to at most the limit, whatever the size the listing said.
        let mut text = String::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(TEMPLATE_BYTES_MAX + 1).read_to_string(&mut text))
            .map_err(|err| Error::invalid(field, format!("workflow {file}: {err}")))?;
        if text.len() as u64 > TEMPLATE_BYTES_MAX {
            return Err(Error::invalid(
                field,
                format!("workflow {file} is larger than {TEMPLATE_BYTES_MAX} bytes"),
            ));
        }
        let template = Template::parse(&text)
            .map_err(|why| Error::invalid(field, format!("workflow {file}: {why}")))?;
        templates.insert(name.to_owned(), template);
    }
    Ok(templates)
}

/// A lowercase, UUID-shaped id derived from `seed` (SHA-256, version and
/// variant bits set as for a name-based UUID): the same job always gets the
/// same `prompt_id`, so it can be looked up after a lost answer.
pub fn derived_uuid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8: custom
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `prompt_id` creditgate sends for `job_id`.
pub fn prompt_id_for(job_id: &str) -> String {
    derived_uuid(&format!("creditgate comfyui prompt {job_id}"))
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved
/// characters).
pub fn query_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Summarises a refused `POST /prompt` answer (pure): `error` as a string
/// (older servers) or an object `{type, message, details}` (newer ones),
/// and up to [`NODE_ERRORS_SHOWN_MAX`] `node_errors` as node class and
/// message. Never the raw body.
pub fn rejection_summary(body: &Value) -> String {
    let mut parts = Vec::new();
    match body.get("error") {
        Some(Value::String(text)) => parts.push(summary(text)),
        Some(Value::Object(error)) => {
            let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("");
            let mut line = summary(text("message"));
            if line == "no reason given" {
                line = summary(text("type"));
            }
            if !text("details").trim().is_empty() {
                line = format!("{line}: {}", summary(text("details")));
            }
            parts.push(line);
        }
        _ => {}
    }
    if let Some(nodes) = body.get("node_errors").and_then(Value::as_object) {
        for (id, node) in nodes.iter().take(NODE_ERRORS_SHOWN_MAX) {
            let class = node
                .get("class_type")
                .and_then(Value::as_str)
                .map_or_else(|| format!("node {}", summary(id)), summary);
            let first = node
                .get("errors")
                .and_then(Value::as_array)
                .and_then(|errors| errors.first());
            let message = first
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(summary)
                .unwrap_or_else(|| "invalid".to_owned());
            let details = first
                .and_then(|e| e.get("details"))
                .and_then(Value::as_str)
                .filter(|d| !d.trim().is_empty())
                .map(|d| format!(" ({})", summary(d)))
                .unwrap_or_default();
            parts.push(format!("{class}: {message}{details}"));
        }
        if nodes.len() > NODE_ERRORS_SHOWN_MAX {
            parts.push(format!(
                "and {} more node errors",
                nodes.len() - NODE_ERRORS_SHOWN_MAX
            ));
        }
    }
    if parts.is_empty() {
        "the workflow was refused without a reason".to_owned()
    } else {
        summary(&parts.join("; "))
    }
}

/// The media type of an output file, by its extension.
fn mime_of(filename: &str) -> Option<&'static str> {
    let ext = filename.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" | "opus" => "audio/ogg",
        _ => return None,
    })
}

/// Output keys of the common save nodes: core `SaveImage`/`SaveVideo`
/// (whose videos also come under `images`), `SaveAnimatedWEBP`, the Video
/// Helper Suite's `gifs`, `SaveAudio`.
const OUTPUT_KEYS: [&str; 4] = ["images", "gifs", "videos", "audio"];

/// Reads a finished history entry (`history[prompt_id]`) into a poll
/// status (pure). `base_url` is the instance's, for the `/view` URLs.
pub fn read_history_entry(entry: &Value, base_url: &str) -> PollStatus {
    let status = entry.get("status");
    let status_str = status
        .and_then(|s| s.get("status_str"))
        .and_then(Value::as_str);
    if status_str == Some("error") {
        return PollStatus::Failed {
            code: "generation_failed".to_owned(),
            message: execution_error(status),
        };
    }
    let mut files: Vec<(&str, &str, &str)> = Vec::new();
    if let Some(outputs) = entry.get("outputs").and_then(Value::as_object) {
        // In node order: numeric ids by number ("9" before "12").
        let mut nodes: Vec<(&String, &Value)> = outputs.iter().collect();
        nodes.sort_by_key(|(id, _)| (id.parse::<u64>().unwrap_or(u64::MAX), id.as_str()));
        for (_, node) in nodes {
            for key in OUTPUT_KEYS {
                for item in node
                    .get(key)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let text = |k: &str| item.get(k).and_then(Value::as_str);
                    if let Some(filename) = text("filename") {
                        files.push((
                            filename,
                            text("subfolder").unwrap_or(""),
                            text("type").unwrap_or("output"),
                        ));
                    }
                }
            }
        }
    }
    // Saved files, not the previews a workflow also shows; previews only
    // when nothing was saved.
    let saved: Vec<_> = files.iter().filter(|f| f.2 == "output").copied().collect();
    let files = if saved.is_empty() {
        files.into_iter().filter(|f| f.2 == "temp").collect()
    } else {
        saved
    };
    if files.is_empty() {
        return PollStatus::Failed {
            code: "generation_failed".to_owned(),
            message: "the workflow finished without saving an output file".to_owned(),
        };
    }
    let mut artifacts = Vec::new();
    for (filename, subfolder, kind) in files.into_iter().take(PROVIDER_OUTPUTS_MAX) {
        let bad = |text: &str| {
            text.chars().count() > OUTPUT_NAME_CHARS_MAX || text.chars().any(char::is_control)
        };
        if filename.trim().is_empty() || bad(filename) || bad(subfolder) {
            return PollStatus::Failed {
                code: "generation_failed".to_owned(),
                message: "ComfyUI named an output file that cannot be fetched".to_owned(),
            };
        }
        artifacts.push(Artifact::Remote {
            url: format!(
                "{base_url}/view?filename={}&subfolder={}&type={}",
                query_encode(filename),
                query_encode(subfolder),
                query_encode(kind)
            ),
            mime: mime_of(filename).map(str::to_owned),
        });
    }
    PollStatus::Succeeded(Completion::of(artifacts))
}

/// The `execution_error` (or `execution_interrupted`) message of a failed
/// history entry, summarised.
fn execution_error(status: Option<&Value>) -> String {
    let messages = status
        .and_then(|s| s.get("messages"))
        .and_then(Value::as_array);
    for message in messages.into_iter().flatten().rev() {
        let event = message.get(0).and_then(Value::as_str);
        let data = message.get(1);
        let text = |key: &str| {
            data.and_then(|d| d.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        match event {
            Some("execution_error") => {
                let node = if text("node_type").is_empty() {
                    "a node".to_owned()
                } else {
                    summary(text("node_type"))
                };
                return summary(&format!(
                    "{node} failed: {}",
                    summary(text("exception_message"))
                ));
            }
            Some("execution_interrupted") => {
                return "the prompt was interrupted on the ComfyUI server".to_owned()
            }
            _ => {}
        }
    }
    "the workflow failed on the ComfyUI server".to_owned()
}

/// Where a prompt is in `GET /queue`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePlace {
    /// In `queue_running`.
    Running,
    /// In `queue_pending`.
    Pending,
    /// In neither.
    Absent,
}

/// Finds `prompt_id` in a `GET /queue` answer (pure): entries are arrays
/// whose second item is the prompt id (`[number, prompt_id, prompt,
/// extra_data, outputs]`); objects with a `prompt_id` key are read too.
pub fn queue_place(queue: &Value, prompt_id: &str) -> QueuePlace {
    let holds = |key: &str| {
        queue
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|item| {
                let id = item
                    .get(1)
                    .and_then(Value::as_str)
                    .or_else(|| item.get("prompt_id").and_then(Value::as_str));
                id == Some(prompt_id)
            })
    };
    if holds("queue_running") {
        QueuePlace::Running
    } else if holds("queue_pending") {
        QueuePlace::Pending
    } else {
        QueuePlace::Absent
    }
}

/// A ComfyUI server.
#[derive(Debug)]
pub struct ComfyUiProvider {
    name: String,
    client: HttpClient,
    templates: BTreeMap<String, Template>,
    client_id: String,
    timeout_ms: i64,
    concurrency: usize,
    /// The server's version once read (`Some(None)`: it did not say).
    version: Mutex<Option<Option<Version>>>,
}

impl ComfyUiProvider {
    /// An adapter for `config`'s instance: its base URL is required, and
    /// its `workflows_dir` is read and every template in it checked now.
    /// A `credential` is sent as a Bearer token (a proxy in front).
    pub fn new(config: &ProviderConfig, credential: Option<Credential>) -> Result<Self> {
        let field = |what: &str| format!("providers.{}.{what}", config.name);
        let auth = credential.map_or(Auth::None, Auth::Bearer);
        let client = HttpClient::new(config, auth)?;
        let dir = config.workflows_dir.as_deref().ok_or_else(|| {
            Error::invalid(
                &field("workflows_dir"),
                "a comfyui instance needs the folder of its workflow templates",
            )
        })?;
        let templates = load_templates(Path::new(dir), &field("workflows_dir"))?;
        Ok(ComfyUiProvider {
            name: config.name.clone(),
            client,
            templates,
            client_id: derived_uuid(&format!("creditgate comfyui client {}", config.name)),
            timeout_ms: config.timeout_ms,
            concurrency: config.concurrency,
            version: Mutex::new(None),
        })
    }

    /// The names of the loaded templates.
    pub fn template_names(&self) -> impl Iterator<Item = &str> {
        self.templates.keys().map(String::as_str)
    }

    /// The `client_id` this instance sends.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The server's version, read once from `GET /system_stats` and cached;
    /// `None` when it does not say (treated as an old server).
    pub fn server_version(&self) -> std::result::Result<Option<Version>, ProviderError> {
        if let Some(known) = *self.version.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(known);
        }
        let stats = self.system_stats()?;
        let version = stats
            .pointer("/system/comfyui_version")
            .and_then(Value::as_str)
            .and_then(Version::parse);
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
        Ok(version)
    }

    fn supports(&self, since: Version) -> std::result::Result<bool, ProviderError> {
        Ok(self.server_version()?.is_some_and(|v| v >= since))
    }

    fn system_stats(&self) -> std::result::Result<Value, ProviderError> {
        let answer = self.client.get("/system_stats")?;
        if !answer.is_success() {
            return Err(answer.refusal("system stats refused"));
        }
        answer.json().map_err(ProviderError::not_sent)
    }

    fn read_json(answer: &Answer, what: &str) -> std::result::Result<Value, ProviderError> {
        if !answer.is_success() {
            return Err(answer.refusal(&format!("{what} refused")));
        }
        // A read: asking again is safe.
        answer.json().map_err(ProviderError::not_sent)
    }

    /// `GET /history/{id}`'s entry for `prompt_id`, if it finished.
    fn history(&self, prompt_id: &str) -> std::result::Result<Option<Value>, ProviderError> {
        let answer = self
            .client
            .get(&format!("/history/{}", query_encode(prompt_id)))?;
        let body = Self::read_json(&answer, "history")?;
        if !body.is_object() {
            return Err(ProviderError::not_sent(
                "ComfyUI answered a history that is not an object",
            ));
        }
        Ok(body.get(prompt_id).cloned())
    }

    fn queue(&self) -> std::result::Result<Value, ProviderError> {
        let answer = self.client.get("/queue")?;
        Self::read_json(&answer, "queue")
    }

    /// Where `prompt_id` is: finished (its history entry), queued, or
    /// nowhere. A prompt that finishes between the two reads is caught by
    /// reading the history again.
    fn locate(&self, prompt_id: &str) -> std::result::Result<Located, ProviderError> {
        if let Some(entry) = self.history(prompt_id)? {
            return Ok(Located::Done(entry));
        }
        match queue_place(&self.queue()?, prompt_id) {
            QueuePlace::Running | QueuePlace::Pending => Ok(Located::Queued),
            QueuePlace::Absent => Ok(match self.history(prompt_id)? {
                Some(entry) => Located::Done(entry),
                None => Located::Nowhere,
            }),
        }
    }

    fn prompt_id_of(job: &ProviderJob<'_>) -> Option<String> {
        job.provider_task_id.map(str::to_owned).or_else(|| {
            job.provider_state
                .and_then(|state| state.get("prompt_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    }

    fn accepted(&self, prompt_id: String) -> Submission {
        Submission::Accepted {
            state: Some(json!({"prompt_id": prompt_id, "client_id": self.client_id})),
            task_id: prompt_id,
        }
    }
}

enum Located {
    Done(Value),
    Queued,
    Nowhere,
}

impl Provider for ComfyUiProvider {
    fn submit(&self, job: &ProviderJob<'_>) -> std::result::Result<Submission, ProviderError> {
        let template = self.templates.get(job.upstream_model).ok_or_else(|| {
            ProviderError::permanent(
                "model_unavailable",
                format!(
                    "ComfyUI instance {} has no workflow template \"{}\"",
                    self.name,
                    summary(job.upstream_model)
                ),
            )
        })?;
        let graph = substitute(
            template,
            &Fill {
                prompt: job.prompt.unwrap_or(""),
                seed: job.seed,
                resolution: job.units.resolution.as_deref(),
                aspect_ratio: job.units.aspect_ratio.as_deref(),
                image_url: job.input_image_urls.first().map(String::as_str),
            },
        )?;
        let ours = prompt_id_for(job.job_id);
        let body = json!({"prompt": graph, "client_id": self.client_id, "prompt_id": ours});
        let answer = self
            .client
            .call(Method::Post, "/prompt", Some(&body), &[])?;
        if answer.status == 400 {
            let reason = answer
                .json()
                .map(|body| rejection_summary(&body))
                .unwrap_or_else(|_| "the workflow was refused (HTTP 400)".to_owned());
            return Err(ProviderError::permanent("upstream_rejected", reason));
        }
        if !answer.is_success() {
            return Err(answer.refusal("the prompt was refused"));
        }
        let prompt_id = answer
            .json()
            .ok()
            .and_then(|body| {
                body.get("prompt_id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .ok_or_else(|| ProviderError::OutcomeUnknown {
                message: "ComfyUI accepted the prompt without a readable prompt_id".to_owned(),
            })?;
        check_task_id(&prompt_id).map_err(|message| ProviderError::OutcomeUnknown { message })?;
        Ok(self.accepted(prompt_id))
    }

    fn poll(&self, job: &ProviderJob<'_>) -> std::result::Result<PollStatus, ProviderError> {
        let prompt_id = Self::prompt_id_of(job).ok_or_else(|| {
            ProviderError::permanent("internal", "a ComfyUI job was polled before its prompt id")
        })?;
        Ok(match self.locate(&prompt_id)? {
            Located::Done(entry) => read_history_entry(&entry, self.client.base_url()),
            Located::Queued => PollStatus::Running,
            Located::Nowhere => PollStatus::Abandoned {
                message: "the prompt was deleted from the ComfyUI queue before it ran".to_owned(),
            },
        })
    }

    fn cancel(&self, job: &ProviderJob<'_>) -> std::result::Result<(), ProviderError> {
        let Some(prompt_id) = Self::prompt_id_of(job) else {
            return Ok(());
        };
        match queue_place(&self.queue()?, &prompt_id) {
            QueuePlace::Pending => {
                let answer =
                    self.client
                        .post_json("/queue", &json!({"delete": [prompt_id]}), &[])?;
                if !answer.is_success() {
                    return Err(answer.refusal("deleting from the queue refused"));
                }
            }
            QueuePlace::Running => {
                // Older servers ignore the body and interrupt whatever runs:
                // the queue just showed ours running.
                let body = if self.supports(INTERRUPT_PROMPT_ID_SINCE)? {
                    json!({"prompt_id": prompt_id})
                } else {
                    json!({})
                };
                let answer = self.client.post_json("/interrupt", &body, &[])?;
                if !answer.is_success() {
                    return Err(answer.refusal("the interrupt was refused"));
                }
            }
            QueuePlace::Absent => {}
        }
        Ok(())
    }

    fn idempotent_submit(&self) -> bool {
        false
    }

    fn reconcile(&self, job: &ProviderJob<'_>) -> std::result::Result<Reconciled, ProviderError> {
        if !self.supports(CLIENT_PROMPT_ID_SINCE)? {
            return Ok(Reconciled::Unsupported);
        }
        let ours = prompt_id_for(job.job_id);
        Ok(match self.locate(&ours)? {
            Located::Done(_) | Located::Queued => Reconciled::Found(self.accepted(ours)),
            Located::Nowhere => Reconciled::Absent,
        })
    }

    fn check(&self) -> std::result::Result<CheckReport, ProviderError> {
        let answer = self.client.get("/system_stats")?;
        if matches!(answer.status, 401 | 403) {
            return Ok(CheckReport {
                reachable: true,
                auth_ok: Some(false),
                upstream_credits: None,
                detail: format!(
                    "GET /system_stats: HTTP {} (the proxy in front refused the credential)",
                    answer.status
                ),
            });
        }
        let stats = Self::read_json(&answer, "system stats")?;
        let version_text = stats
            .pointer("/system/comfyui_version")
            .and_then(Value::as_str);
        let version = version_text.and_then(Version::parse);
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
        let devices: Vec<String> = stats
            .get("devices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(4)
            .map(|device| {
                let name = device
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("device");
                let mib = |key: &str| device.get(key).and_then(Value::as_u64).map(|b| b >> 20);
                match (mib("vram_free"), mib("vram_total")) {
                    (Some(free), Some(total)) => {
                        format!("{}: {free} of {total} MiB VRAM free", summary(name))
                    }
                    _ => summary(name),
                }
            })
            .collect();
        let reconcile = if version.is_some_and(|v| v >= CLIENT_PROMPT_ID_SINCE) {
            "takes our prompt ids"
        } else {
            "ignores our prompt ids (no reconciliation)"
        };
        Ok(CheckReport {
            reachable: true,
            auth_ok: None,
            upstream_credits: None,
            detail: format!(
                "GET /system_stats: ComfyUI {} ({reconcile}); {} template(s); {}",
                version_text.map_or_else(|| "of unknown version".to_owned(), summary),
                self.templates.len(),
                if devices.is_empty() {
                    "no device listed".to_owned()
                } else {
                    devices.join(", ")
                }
            ),
        })
    }

    fn call_timeout_ms(&self) -> i64 {
        self.timeout_ms
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(text: &str) -> Template {
        Template::parse(text).expect("a valid template")
    }

    fn fill<'a>(prompt: &'a str) -> Fill<'a> {
        Fill {
            prompt,
            seed: 42,
            resolution: None,
            aspect_ratio: None,
            image_url: None,
        }
    }

    const GRAPH: &str = r#"{
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width:1024}}", "height": "{{height:1024}}", "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}", "steps": 20}}
    }"#;

    #[test]
    fn a_prompt_with_quotes_and_braces_stays_one_string() {
        let nasty = r#"say "hi"}, "9": {"class_type": "Evil"} {{seed}} \ "#;
        let graph = substitute(&template(GRAPH), &fill(nasty)).expect("filled");
        assert_eq!(
            graph["6"]["inputs"]["text"],
            Value::String(nasty.to_owned())
        );
        assert_eq!(
            graph.as_object().expect("object").len(),
            4,
            "no node injected"
        );
        assert_eq!(graph["7"]["inputs"]["text"], "");
        assert_eq!(graph["3"]["inputs"]["seed"], json!(42u64));
        assert_eq!(graph["5"]["inputs"]["width"], json!(1024));
        assert_eq!(graph["5"]["inputs"]["batch_size"], json!(1));
        assert_eq!(graph["6"]["inputs"]["clip"], json!(["4", 1]));
    }

    #[test]
    fn negative_seeds_keep_their_bits_as_comfyui_unsigned_seeds() {
        let mut f = fill("p");
        f.seed = -1;
        let graph = substitute(&template(GRAPH), &f).expect("filled");
        assert_eq!(graph["3"]["inputs"]["seed"], json!(u64::MAX));
    }

    #[test]
    fn size_comes_from_resolution_then_aspect_ratio_then_the_default() {
        let t = template(GRAPH);
        let mut f = fill("p");
        f.resolution = Some("832x1216");
        let g = substitute(&t, &f).expect("filled");
        assert_eq!(
            (
                g["5"]["inputs"]["width"].clone(),
                g["5"]["inputs"]["height"].clone()
            ),
            (json!(832), json!(1216))
        );
        f.resolution = Some("1K");
        f.aspect_ratio = Some("16:9");
        let g = substitute(&t, &f).expect("filled");
        assert_eq!(
            (
                g["5"]["inputs"]["width"].clone(),
                g["5"]["inputs"]["height"].clone()
            ),
            (json!(1344), json!(768))
        );
        f.aspect_ratio = Some("0:9");
        let g = substitute(&t, &f).expect("filled");
        assert_eq!(g["5"]["inputs"]["height"], json!(1024));
    }

    #[test]
    fn templates_are_checked_when_loaded() {
        for (text, why) in [
            ("[1]", "not a JSON object"),
            ("{}", "no nodes"),
            (r#"{"1": {"inputs": {}}}"#, "node 1"),
            (
                r#"{"1": {"class_type": "X", "inputs": {"t": "a {{prompt}}"}}}"#,
                "whole string",
            ),
            (
                r#"{"1": {"class_type": "X", "inputs": {"t": "{{promt}}"}}}"#,
                "unknown placeholder",
            ),
            (
                r#"{"1": {"class_type": "X", "inputs": {"w": "{{width}}"}}}"#,
                "needs a default",
            ),
            (
                r#"{"1": {"class_type": "X", "inputs": {"w": "{{width:99999}}"}}}"#,
                "16 to",
            ),
        ] {
            let err = Template::parse(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn an_image_template_needs_an_image() {
        let t = template(
            r#"{"1": {"class_type": "LoadImageFromUrl", "inputs": {"url": "{{image}}"}}}"#,
        );
        assert!(t.needs_image());
        let err = substitute(&t, &fill("p")).expect_err("no image");
        assert!(
            matches!(&err, ProviderError::Permanent { code, .. } if code == "unsupported_input")
        );
        let mut f = fill("p");
        f.image_url = Some("https://x/a.png");
        assert_eq!(
            substitute(&t, &f).expect("filled")["1"]["inputs"]["url"],
            "https://x/a.png"
        );
    }

    #[test]
    fn template_names_cannot_walk_out_of_the_folder() {
        assert!(is_template_name("sdxl-basic"));
        assert!(is_template_name("flux_1.dev"));
        for bad in ["", "../x", "a/b", "a\\b", ".hidden", "a b"] {
            assert!(!is_template_name(bad), "{bad}");
        }
    }

    #[test]
    fn versions_compare_by_number() {
        assert_eq!(Version::parse("v0.3.45"), Some(Version(0, 3, 45)));
        assert_eq!(Version::parse("0.3.45-dev+abc"), Some(Version(0, 3, 45)));
        assert_eq!(Version::parse("0.36"), Some(Version(0, 36, 0)));
        assert_eq!(Version::parse("unknown"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
        assert!(Version(0, 36, 0) > CLIENT_PROMPT_ID_SINCE);
        assert!(Version(0, 3, 44) < CLIENT_PROMPT_ID_SINCE);
    }

    #[test]
    fn prompt_ids_are_stable_lowercase_uuids() {
        let id = prompt_id_for("job_01HX");
        assert_eq!(id, prompt_id_for("job_01HX"));
        assert_ne!(id, prompt_id_for("job_01HY"));
        assert_eq!(id.len(), 36);
        let parts: Vec<_> = id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(id
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_eq!(&id[14..15], "8");
    }

    #[test]
    fn old_and_new_refusals_are_summarised_without_the_body() {
        let old = json!({"error": "no prompt", "node_errors": []});
        assert_eq!(rejection_summary(&old), "no prompt");
        let new = json!({
            "error": {"type": "prompt_outputs_failed_validation",
                      "message": "Prompt outputs failed validation", "details": "", "extra_info": {}},
            "node_errors": {"4": {"errors": [{"type": "value_not_in_list",
                "message": "Value not in list", "details": "ckpt_name: 'x.safetensors' not in []",
                "extra_info": {"secret": "do-not-show"}}],
                "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"}}
        });
        let text = rejection_summary(&new);
        assert!(
            text.starts_with(
                "Prompt outputs failed validation; CheckpointLoaderSimple: Value not in list"
            ),
            "{text}"
        );
        assert!(!text.contains("do-not-show"));
        assert_eq!(
            rejection_summary(&json!({})),
            "the workflow was refused without a reason"
        );
    }

    #[test]
    fn history_outputs_become_view_urls() {
        let entry = json!({"outputs": {
            "9": {"images": [{"filename": "a b&c.png", "subfolder": "x/y", "type": "output"},
                             {"filename": "p.png", "subfolder": "", "type": "temp"}]},
            "12": {"gifs": [{"filename": "v.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"}]}},
            "status": {"status_str": "success", "completed": true}});
        let PollStatus::Succeeded(done) = read_history_entry(&entry, "http://box:8188") else {
            panic!("succeeded")
        };
        assert_eq!(
            done.artifacts,
            vec![
                Artifact::Remote {
                    url: "http://box:8188/view?filename=a%20b%26c.png&subfolder=x%2Fy&type=output"
                        .into(),
                    mime: Some("image/png".into())
                },
                Artifact::Remote {
                    url: "http://box:8188/view?filename=v.mp4&subfolder=&type=output".into(),
                    mime: Some("video/mp4".into())
                },
            ]
        );
        let failed = json!({"outputs": {}, "status": {"status_str": "error", "completed": false,
            "messages": [["execution_start", {}], ["execution_error",
                {"node_type": "KSampler", "exception_message": "CUDA out of memory"}]]}});
        assert_eq!(
            read_history_entry(&failed, "http://b"),
            PollStatus::Failed {
                code: "generation_failed".into(),
                message: "KSampler failed: CUDA out of memory".into()
            }
        );
        let empty = json!({"outputs": {}, "status": {"status_str": "success"}});
        assert!(matches!(
            read_history_entry(&empty, "http://b"),
            PollStatus::Failed { .. }
        ));
    }

    #[test]
    fn the_queue_is_read_by_the_second_item() {
        let queue = json!({"queue_running": [[1, "a", {}, {}, []]],
                           "queue_pending": [[2, "b", {}, {}, []], {"prompt_id": "c"}]});
        assert_eq!(queue_place(&queue, "a"), QueuePlace::Running);
        assert_eq!(queue_place(&queue, "b"), QueuePlace::Pending);
        assert_eq!(queue_place(&queue, "c"), QueuePlace::Pending);
        assert_eq!(queue_place(&queue, "d"), QueuePlace::Absent);
    }
}
