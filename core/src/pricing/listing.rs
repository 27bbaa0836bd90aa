//! The model listing: the catalog as `/v1/models/list` shows it, each model
//! with the price of its default request (computed by [`mod@super::estimate`]).
//!
//! Invariant: one entry per catalog model, in catalog order; nothing here
//! prices a request of its own.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value};

use super::catalog::{Catalog, InputImages, OptionName, OptionSpec, PriceRule, PriceUnit};
use super::estimate::default_credits;

/// The `/v1/models/list` answer: the catalog as agents see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// Always `"credits"`.
    pub currency: String,
    /// The catalog's price version.
    pub price_version: String,
    /// One entry per model, in catalog order.
    pub models: Vec<ListingEntry>,
}

/// One model as `/v1/models/list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListingEntry {
    /// The model id.
    pub model: String,
    /// Its product.
    pub product: String,
    /// Its category.
    pub category: String,
    /// What one unit of `base_price` buys.
    pub unit: PriceUnit,
    /// Credits per unit for the default request.
    #[serde(with = "super::decimal_json")]
    pub base_price: Decimal,
    /// Credits for a request that sets no option (defaults, fewest input
    /// images); `None` only for a catalog built without `parse_catalog`
    /// whose default request cannot be priced.
    #[serde(with = "super::decimal_json::option")]
    pub default_credits: Option<Decimal>,
    /// The options with their allowed values and defaults.
    pub options: BTreeMap<OptionName, OptionSpec>,
    /// The price rules (`4K` costs 40, `1080p` costs ×1.8, ...).
    pub price_rules: Vec<PriceRule>,
    /// How many input images a request must and may carry.
    pub input_images: InputImages,
    /// The catalog's note.
    pub note: String,
    /// The JSON Schema of the generate request.
    pub input_schema: Map<String, Value>,
    /// The price by usage, for a model priced by what a job used (then
    /// `default_credits` is the most a job costs, and what is held).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_price: Option<super::catalog::UsagePrice>,
}

/// Builds the `/v1/models/list` answer from a catalog.
pub fn listing(catalog: &Catalog) -> Listing {
    let models = catalog
        .models
        .iter()
        .map(|spec| ListingEntry {
            model: spec.model.clone(),
            product: spec.product.clone(),
            category: spec.category.clone(),
            unit: spec.unit,
            base_price: spec.base_price,
            default_credits: default_credits(spec),
            options: spec.options.clone(),
            price_rules: spec.price_rules.clone(),
            input_images: spec.input_images,
            note: spec.note.clone(),
            input_schema: spec.input_schema.clone(),
            usage_price: spec.usage_price.clone(),
        })
        .collect();
    Listing {
        currency: catalog.currency.clone(),
        price_version: catalog.price_version.clone(),
        models,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::catalog::parse_catalog;
    use crate::pricing::estimate::tests::TEST_CATALOG;
    use std::str::FromStr;

    const RYNJER: &str = include_str!("../../../fixtures/catalogs/rynjer.json");
    const KIWIWHALE: &str = include_str!("../../../fixtures/catalogs/kiwiwhale.json");

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("test decimal")
    }

    fn catalog(text: &str) -> Catalog {
        parse_catalog(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn listing_shows_defaults_and_rules() {
        let rynjer = catalog(RYNJER);
        let listed = listing(&rynjer);
        assert_eq!(listed.currency, "credits");
        assert_eq!(listed.price_version, "2026-02-02-v1");
        assert_eq!(listed.models.len(), rynjer.models.len());
        for (entry, spec) in listed.models.iter().zip(&rynjer.models) {
            assert_eq!(entry.model, spec.model);
            // No rule matches a default, so the default request costs base_price.
            assert_eq!(
                entry.default_credits,
                Some(spec.base_price),
                "{}",
                spec.model
            );
        }
        let text = serde_json::to_string(&listed).expect("serialize");
        assert!(text.contains(r#""model":"nano-banana-pro","product":"image","category":"text-to-image","unit":"image","base_price":20,"default_credits":20"#), "{text}");
        assert!(
            text.contains(r#""price_rules":[{"option":"resolution","equals":"4K","price":40}]"#)
        );
        assert!(text.contains(r#""count":{"allowed":[1,2,4,8],"default":1}"#));
        let kiwi = listing(&catalog(KIWIWHALE));
        let text = serde_json::to_string(&kiwi).expect("serialize");
        assert!(
            text.contains(r#""base_price":0.3165,"default_credits":0.3165"#),
            "{text}"
        );
        let per_second = listing(&catalog(TEST_CATALOG));
        assert_eq!(per_second.models[2].default_credits, Some(dec("0.0825")));
    }
}
