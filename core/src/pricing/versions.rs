//! Price versions: each imported catalog becomes an immutable version in
//! `price_versions`; exactly one version is active (a partial unique index);
//! activating another is one transaction. This module alone writes that
//! table. A version's catalog never changes: changing a price means
//! importing a new version, so a job charged under a version is charged its
//! price forever.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use std::collections::BTreeMap;

use serde_json::Value;

use crate::clock::UnixMillis;
use crate::error::{Error, Result};
use crate::pricing::{parse_catalog, Catalog};
use crate::store::{ReadOnly, Tx};

/// Price versions listed at most.
pub const PRICE_VERSIONS_LIST_MAX: usize = 1_000;

/// A stored price version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceVersionInfo {
    /// The catalog's `price_version`.
    pub version: String,
    /// Whether requests without a `price_version` are priced with it.
    pub active: bool,
    /// Whether it is no longer honoured for new requests.
    pub retired: bool,
    /// Models in the catalog.
    pub models: usize,
    /// When it was imported.
    pub imported_at: UnixMillis,
    /// SHA-256 of the stored catalog, hex.
    pub digest: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The version imported.
    pub version: String,
    /// False when the same catalog was already imported (a replay).
    pub created: bool,
    /// Whether it is the active version now.
    pub active: bool,
}

/// The stored form of a catalog and its digest.
pub(crate) fn canonical(catalog: &Catalog) -> Result<(String, String)> {
    let json = serde_json::to_string(catalog)
        .map_err(|err| Error::internal(format!("a catalog cannot be serialised: {err}")))?;
    let digest = hex::encode(Sha256::digest(json.as_bytes()));
    Ok((json, digest))
}

/// Stores `catalog` as a new version; the first version ever imported
/// becomes active. Importing the same catalog again is a replay; another
/// catalog under an existing version is [`Error::PriceVersionConflict`].
pub(crate) fn import(tx: &Tx<'_>, catalog: &Catalog, now: UnixMillis) -> Result<ImportOutcome> {
    let (json, digest) = canonical(catalog)?;
    let existing: Option<(String, bool)> = tx
        .prepare_cached("SELECT digest, active FROM price_versions WHERE version = ?1")?
        .query_row([&catalog.price_version], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    if let Some((stored, active)) = existing {
        if stored != digest {
            return Err(Error::PriceVersionConflict {
                version: catalog.price_version.clone(),
            });
        }
        return Ok(ImportOutcome {
            version: catalog.price_version.clone(),
            created: false,
            active,
        });
    }
    let has_active = active_version_in(tx)?.is_some();
    tx.prepare_cached(
        "INSERT INTO price_versions (version, catalog, digest, imported_at, active)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        catalog.price_version,
        json,
        digest,
        now,
        !has_active
    ])?;
    Ok(ImportOutcome {
        version: catalog.price_version.clone(),
        created: true,
        active: !has_active,
    })
}

/// Makes `version` the active one, atomically. Unknown or retired versions
/// are refused naming the active one.
pub(crate) fn activate(tx: &Tx<'_>, version: &str) -> Result<()> {
    let retired: Option<bool> = tx
        .prepare_cached("SELECT retired FROM price_versions WHERE version = ?1")?
        .query_row([version], |row| row.get(0))
        .optional()?;
    match retired {
        None | Some(true) => Err(unavailable(tx, version, retired.is_some())?),
        Some(false) => {
            tx.prepare_cached("UPDATE price_versions SET active = 0 WHERE active = 1")?
                .execute([])?;
            tx.prepare_cached("UPDATE price_versions SET active = 1 WHERE version = ?1")?
                .execute([version])?;
            Ok(())
        }
    }
}

/// Retires `version`: requests can no longer pin it (jobs already priced
/// under it keep their price). The active version cannot be retired.
pub(crate) fn retire(tx: &Tx<'_>, version: &str) -> Result<()> {
    let active: Option<bool> = tx
        .prepare_cached("SELECT active FROM price_versions WHERE version = ?1")?
        .query_row([version], |row| row.get(0))
        .optional()?;
    match active {
        None => Err(unavailable(tx, version, false)?),
        Some(true) => Err(Error::invalid(
            "version",
            "the active version cannot be retired; activate another first",
        )),
        Some(false) => {
            tx.prepare_cached("UPDATE price_versions SET retired = 1 WHERE version = ?1")?
                .execute([version])?;
            Ok(())
        }
    }
}

/// The version a request is priced under: `requested` if it is stored and
/// not retired, else the active version. Errors name the active version.
pub(crate) fn resolve(conn: &ReadOnly<'_>, requested: Option<&str>) -> Result<String> {
    match requested {
        None => active_version_in(conn)?.ok_or(Error::NoPriceCatalog),
        Some(version) => {
            let retired: Option<bool> = conn
                .prepare_cached("SELECT retired FROM price_versions WHERE version = ?1")?
                .query_row([version], |row| row.get(0))
                .optional()?;
            match retired {
                Some(false) => Ok(version.to_owned()),
                other => Err(unavailable(conn, version, other.is_some())?),
            }
        }
    }
}

/// The active version, if any catalog was imported.
pub(crate) fn active_version(conn: &ReadOnly<'_>) -> Result<Option<String>> {
    active_version_in(conn)
}

fn active_version_in(conn: &ReadOnly<'_>) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT version FROM price_versions WHERE active = 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

fn unavailable(conn: &ReadOnly<'_>, version: &str, retired: bool) -> Result<Error> {
    Ok(Error::UnknownPriceVersion {
        requested: version.to_owned(),
        retired,
        active: active_version_in(conn)?,
    })
}

/// The catalog stored under `version`.
pub(crate) fn load(conn: &ReadOnly<'_>, version: &str) -> Result<Catalog> {
    let json: String = conn
        .prepare_cached("SELECT catalog FROM price_versions WHERE version = ?1")?
        .query_row([version], |row| row.get(0))
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "price version",
            id: version.to_owned(),
        })?;
    // Stored catalogs were validated on import; failing here means the row
    // was changed behind our back: a server fault, not the caller's.
    parse_catalog(&json).map_err(|err| {
        Error::corrupt(format!(
            "stored catalog {version} no longer validates: {err}"
        ))
    })
}

/// Every version, newest import first.
pub(crate) fn list(conn: &ReadOnly<'_>) -> Result<Vec<PriceVersionInfo>> {
    let mut stmt = conn.prepare(
        "SELECT version, active, retired, imported_at, digest, catalog FROM price_versions
         ORDER BY imported_at DESC, version LIMIT ?1",
    )?;
    let rows = stmt.query_map([PRICE_VERSIONS_LIST_MAX as i64], |row| {
        let catalog: String = row.get(5)?;
        Ok(PriceVersionInfo {
            version: row.get(0)?,
            active: row.get(1)?,
            retired: row.get(2)?,
            imported_at: row.get(3)?,
            digest: row.get(4)?,
            models: serde_json::from_str::<serde_json::Value>(&catalog)
                .ok()
                .and_then(|value| value["models"].as_array().map(Vec::len))
                .unwrap_or(0),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How one model of a price version differs from another version's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChangeKind {
    /// Only in the compared version.
    Added,
    /// Only in the version it is compared against.
    Removed,
    /// In both, with fields that differ.
    Changed,
    /// In both, alike.
    Same,
}

impl ModelChangeKind {
    /// The change in a word.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelChangeKind::Added => "added",
            ModelChangeKind::Removed => "removed",
            ModelChangeKind::Changed => "changed",
            ModelChangeKind::Same => "same",
        }
    }
}

/// One model of a comparison of two price versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChange {
    /// The model's id.
    pub model: String,
    /// How it changed.
    pub kind: ModelChangeKind,
    /// For a change: the model's fields whose values differ.
    pub fields: Vec<String>,
}

/// `version`'s models against `other`'s, model by model: those of
/// `version` in id order, then those only `other` has.
pub fn compare(version: &Catalog, other: &Catalog) -> Vec<ModelChange> {
    let by_model = |catalog: &Catalog| -> BTreeMap<String, Value> {
        catalog
            .models
            .iter()
            .map(|m| {
                (
                    m.model.clone(),
                    serde_json::to_value(m).unwrap_or(Value::Null),
                )
            })
            .collect()
    };
    let (ours, theirs) = (by_model(version), by_model(other));
    let change = |model: &str, kind, fields| ModelChange {
        model: model.to_owned(),
        kind,
        fields,
    };
    let mut changes: Vec<ModelChange> = ours
        .iter()
        .map(|(model, spec)| match theirs.get(model) {
            None => change(model, ModelChangeKind::Added, Vec::new()),
            Some(old) if old == spec => change(model, ModelChangeKind::Same, Vec::new()),
            Some(old) => {
                let fields = spec
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(field, value)| old.get(field.as_str()) != Some(value))
                    .map(|(field, _)| field.clone())
                    .collect();
                change(model, ModelChangeKind::Changed, fields)
            }
        })
        .collect();
    changes.extend(
        theirs
            .keys()
            .filter(|model| !ours.contains_key(*model))
            .map(|model| change(model, ModelChangeKind::Removed, Vec::new())),
    );
    changes
}

#[cfg(test)]
mod compare_tests {
    use super::*;

    #[test]
    fn two_versions_compare_model_by_model() {
        let shipped = include_str!("../../../fixtures/catalogs/rynjer.json");
        let before = parse_catalog(shipped).expect("catalog");
        let mut text: Value = serde_json::from_str(shipped).expect("json");
        let models = text["models"].as_array_mut().expect("models");
        let gone = models.remove(1)["model"].as_str().expect("id").to_owned();
        let changed = models[0]["model"].as_str().expect("id").to_owned();
        models[0]["base_price"] = serde_json::json!(33);
        text["price_version"] = serde_json::json!("next");
        let after = parse_catalog(&text.to_string()).expect("catalog");
        let changes = compare(&after, &before);
        let of = |model: &str| changes.iter().find(|c| c.model == model).expect("listed");
        assert_eq!(of(&changed).kind, ModelChangeKind::Changed);
        assert_eq!(of(&changed).fields, vec!["base_price".to_owned()]);
        assert_eq!(of(&gone).kind, ModelChangeKind::Removed);
        assert_eq!(changes.len(), before.models.len());
        assert_eq!(
            changes
                .iter()
                .filter(|c| c.kind == ModelChangeKind::Same)
                .count(),
            before.models.len() - 2
        );
    }
}
