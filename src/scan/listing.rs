//! Listings as input: a record read into a listing to check, with its seller's details.

use std::path::Path;

use serde::Serialize;

use crate::input::records::{self, RawRecord};
use crate::vision::source::ImageRef;

/// Seller details kept with each verdict for later network analysis.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Seller {
    /// Seller id on the marketplace.
    pub seller_id: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller_name: Option<String>,
    /// Region the seller is registered in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Where goods ship from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ship_from: Option<String>,
    /// Contact details as published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Items sold so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sold_count: Option<u64>,
    /// More contacts, each `kind:value` (kinds phone, email, wechat, whatsapp, qq, telegram, url,
    /// other).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    /// Bank or wallet account payments go to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_account: Option<String>,
    /// Business registration number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_registration: Option<String>,
    /// Warehouse address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<String>,
    /// The shop's address on the marketplace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shop_url: Option<String>,
    /// When the listing went online (RFC 3339, as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listed_at: Option<String>,
}

/// A listing to check.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Line in the input (0 for a single query).
    pub line: usize,
    /// The marketplace's listing id.
    pub listing_id: String,
    /// Listing title.
    pub title: Option<String>,
    /// Price, if given.
    pub price: Option<f64>,
    /// Currency of the price.
    pub currency: Option<String>,
    /// Photos.
    pub images: Vec<ImageRef>,
    /// The seller.
    pub seller: Seller,
    /// Optional fields that were left out because they were unusable (the listing was judged
    /// without them).
    pub warnings: Vec<String>,
}

/// Parses a raw input record into a listing; on failure returns the listing id (when readable) and
/// why.
pub fn parse_listing(
    raw: &RawRecord,
    base_dir: &Path,
    max_images: usize,
) -> Result<Listing, (Option<String>, String)> {
    let f = raw.fields.as_ref().map_err(|e| (None, e.clone()))?;
    let id = records::text(f, "listing_id").map_err(|e| (None, e))?;
    let fail = |e: String| (Some(id.clone()), e);
    let images = records::list(f, "images").map_err(fail)?;
    if images.is_empty() {
        return Err(fail("missing field `images` (one or more image paths or URLs)".into()));
    }
    if images.len() > max_images {
        return Err(fail(format!(
            "{} images, over the limit of {max_images} (limits.max_images_per_record)",
            images.len()
        )));
    }
    let price = match f.get("price") {
        None | Some(serde_json::Value::Null) => None,
        Some(_) => Some(records::price(f, "price").map_err(fail)?),
    };
    let currency = records::opt_text(f, "currency").map_err(fail)?.map(|c| c.to_ascii_uppercase());
    if price.is_some() && currency.is_none() {
        return Err(fail("field `currency` is required with `price`".into()));
    }
    let mut warnings = Vec::new();
    Ok(Listing {
        line: raw.line,
        listing_id: id.clone(),
        title: records::opt_text(f, "title").map_err(fail)?,
        price,
        currency,
        images: images
            .iter()
            .map(|s| ImageRef::parse(s, base_dir))
            .collect::<Result<_, _>>()
            .map_err(fail)?,
        seller: seller_fields(f, records::text(f, "seller_id").map_err(fail)?, &mut warnings),
        warnings,
    })
}

/// The seller's fields of a record; a wrong-typed optional field is left out and said in
/// `warnings`, the others are kept.
fn seller_fields(
    f: &serde_json::Map<String, serde_json::Value>,
    seller_id: String,
    warnings: &mut Vec<String>,
) -> Seller {
    let mut text = |key: &str| {
        records::opt_text(f, key).unwrap_or_else(|e| {
            warnings.push(format!("{e}; field ignored"));
            None
        })
    };
    let mut seller = Seller {
        seller_id,
        seller_name: text("seller_name"),
        region: text("region"),
        ship_from: text("ship_from"),
        contact: text("contact"),
        payment_account: text("payment_account"),
        business_registration: text("business_registration"),
        warehouse: text("warehouse"),
        shop_url: text("shop_url"),
        listed_at: text("listed_at"),
        ..Seller::default()
    };
    seller.sold_count = records::opt_count(f, "sold_count").unwrap_or_else(|e| {
        warnings.push(format!("{e}; field ignored"));
        None
    });
    seller.contacts = records::list(f, "contacts").unwrap_or_else(|e| {
        warnings.push(format!("{e}; field ignored"));
        Vec::new()
    });
    seller
}
