//! Gate operations on prices: importing, activating, retiring and listing
//! price versions, estimating, and the model listing.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gate::Gate;
use crate::pricing::versions::{self, ImportOutcome, ModelChange, PriceVersionInfo};
use crate::pricing::{self, parse_catalog, Catalog, Estimate, EstimateRequest, Listing};

impl Gate {
    /// Validates a catalog (JSON text) and stores it as a new immutable price
    /// version; the first one imported becomes active. A malformed catalog is
    /// refused with the path of the offending field and nothing is stored.
    ///
    /// A catalog that routes a model to a provider this gate does not have
    /// is refused ([`Error::ProviderNotConfigured`] naming both).
    pub fn import_catalog(&self, json: &str) -> Result<ImportOutcome> {
        let catalog = parse_catalog(json)?;
        self.check_routes(&catalog)?;
        let now = self.clock.now();
        self.store
            .write(move |tx| versions::import(tx, &catalog, now))
    }

    /// Makes `version` the active price version, unless it routes a model
    /// to a provider this gate does not have
    /// ([`Error::ProviderNotConfigured`]).
    pub fn activate_price_version(&self, version: &str) -> Result<()> {
        // A version that does not exist is refused by the write below.
        if let Ok(catalog) = self.catalog_version(version) {
            self.check_routes(&catalog)?;
        }
        let version = version.to_owned();
        self.store.write(move |tx| versions::activate(tx, &version))
    }

    /// Retires `version`: new requests can no longer pin it.
    pub fn retire_price_version(&self, version: &str) -> Result<()> {
        let version = version.to_owned();
        self.store.write(move |tx| versions::retire(tx, &version))
    }

    /// Checks that every model of every catalog still honoured (the active
    /// one and those requests may pin) is routed to a provider this gate
    /// has: `serve` refuses to start otherwise.
    pub fn check_provider_routes(&self) -> Result<()> {
        for (catalog, _) in self.honoured_catalogs()? {
            self.check_routes(&catalog)?;
        }
        Ok(())
    }

    fn check_routes(&self, catalog: &Catalog) -> Result<()> {
        for model in &catalog.models {
            if self.providers.get(&model.provider).is_none() {
                return Err(Error::ProviderNotConfigured {
                    model: model.model.clone(),
                    provider: model.provider.clone(),
                });
            }
        }
        Ok(())
    }

    /// Every stored price version.
    pub fn price_versions(&self) -> Result<Vec<PriceVersionInfo>> {
        self.store.read(versions::list)
    }

    /// The catalog a request is priced with: `requested` if it is honoured,
    /// else the active one.
    pub fn catalog(&self, requested: Option<&str>) -> Result<Arc<Catalog>> {
        let version = self.store.read(|conn| versions::resolve(conn, requested))?;
        self.catalog_version(&version)
    }

    /// The catalog of exactly `version` (retired or not), from the cache.
    pub(crate) fn catalog_version(&self, version: &str) -> Result<Arc<Catalog>> {
        if let Some(catalog) = self
            .catalogs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(version)
        {
            return Ok(catalog.clone());
        }
        let catalog = Arc::new(self.store.read(|conn| versions::load(conn, version))?);
        self.catalogs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(version.to_owned(), catalog.clone());
        Ok(catalog)
    }

    /// Prices a request under `price_version` (or the active version).
    pub fn estimate(
        &self,
        request: &EstimateRequest,
        price_version: Option<&str>,
    ) -> Result<Estimate> {
        let catalog = self.catalog(price_version)?;
        Ok(pricing::estimate(&catalog, request)?)
    }

    /// Prices a request body as agents send it to `POST /v1/credits/estimate`
    /// (normalised like a generate body; `request_id` and `prompt` optional).
    /// An agent estimates before it uploads: a body without input images is
    /// priced with the fewest the model takes
    /// ([`pricing::estimate_before_upload`]); a submission still needs them.
    pub fn estimate_body(&self, body: &serde_json::Value) -> Result<Estimate> {
        let request = crate::request::normalize(body)?;
        let catalog = self.catalog(request.price_version.as_deref())?;
        Ok(pricing::estimate_before_upload(
            &catalog,
            &request.estimate_request(),
        )?)
    }

    /// The model listing of `price_version` (or the active version).
    pub fn models(&self, price_version: Option<&str>) -> Result<Listing> {
        let catalog = self.catalog(price_version)?;
        Ok(pricing::listing(&catalog))
    }

    /// Every catalog a request may be priced with (the price versions not
    /// retired), the active one first, each with whether it is active.
    pub fn honoured_catalogs(&self) -> Result<Vec<(Arc<Catalog>, bool)>> {
        let mut honoured = Vec::new();
        for info in self.price_versions()? {
            if !info.retired {
                honoured.push((self.catalog_version(&info.version)?, info.active));
            }
        }
        honoured.sort_by_key(|(_, active)| !*active);
        Ok(honoured)
    }

    /// The active price version, if any catalog was imported.
    pub fn active_price_version(&self) -> Result<Option<String>> {
        self.store.read(versions::active_version)
    }

    /// `version` against the active price version, model by model; `None`
    /// when it is the active one or none is active.
    pub fn compare_with_active(&self, version: &str) -> Result<Option<(String, Vec<ModelChange>)>> {
        let catalog = self.catalog(Some(version))?;
        match self.active_price_version()? {
            Some(active) if active != version => {
                let active_catalog = self.catalog(Some(&active))?;
                Ok(Some((active, versions::compare(&catalog, &active_catalog))))
            }
            _ => Ok(None),
        }
    }
}
