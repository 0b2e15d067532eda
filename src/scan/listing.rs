//! Listings as input: a record read into a listing to check, with its seller's details.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::input::fields::{self, Count, List, Price, Text};
use crate::input::records::RawRecord;
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

/// The fields of a listing record, as given (see `input::fields`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ListingFields {
    listing_id: Text,
    images: List,
    price: Price,
    currency: Text,
    title: Text,
    seller_id: Text,
    seller_name: Text,
    region: Text,
    ship_from: Text,
    contact: Text,
    payment_account: Text,
    business_registration: Text,
    warehouse: Text,
    shop_url: Text,
    listed_at: Text,
    sold_count: Count,
    contacts: List,
}

/// Parses a raw input record into a listing; on failure returns the listing id (when readable) and
/// why.
pub fn parse_listing(
    raw: &RawRecord,
    base_dir: &Path,
    max_images: usize,
) -> Result<Listing, (Option<String>, String)> {
    let f = raw.fields.as_ref().map_err(|e| (None, e.clone()))?;
    let mut f: ListingFields = fields::record(f).map_err(|e| (None, e))?;
    let id = std::mem::take(&mut f.listing_id).required("listing_id").map_err(|e| (None, e))?;
    let fail = |e: String| (Some(id.clone()), e);
    let images = std::mem::take(&mut f.images).named("images").map_err(fail)?;
    if images.is_empty() {
        return Err(fail("missing field `images` (one or more image paths or URLs)".into()));
    }
    if images.len() > max_images {
        return Err(fail(format!(
            "{} images, over the limit of {max_images} (limits.max_images_per_record)",
            images.len()
        )));
    }
    let price = std::mem::take(&mut f.price).named("price").map_err(fail)?;
    let currency = std::mem::take(&mut f.currency).named("currency").map_err(fail)?;
    let currency = currency.map(|c| c.to_ascii_uppercase());
    if price.is_some() && currency.is_none() {
        return Err(fail("field `currency` is required with `price`".into()));
    }
    let title = std::mem::take(&mut f.title).named("title").map_err(fail)?;
    let images = images
        .iter()
        .map(|s| ImageRef::parse(s, base_dir))
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    let seller_id = std::mem::take(&mut f.seller_id).required("seller_id").map_err(fail)?;
    let mut warnings = Vec::new();
    let seller = seller_fields(f, seller_id, &mut warnings);
    Ok(Listing { line: raw.line, listing_id: id, title, price, currency, images, seller, warnings })
}

/// The seller's fields of a record; a wrong-typed optional field is left out and said in
/// `warnings`, the others are kept.
fn seller_fields(f: ListingFields, seller_id: String, warnings: &mut Vec<String>) -> Seller {
    let w = warnings;
    Seller {
        seller_id,
        seller_name: kept(f.seller_name.named("seller_name"), w),
        region: kept(f.region.named("region"), w),
        ship_from: kept(f.ship_from.named("ship_from"), w),
        contact: kept(f.contact.named("contact"), w),
        payment_account: kept(f.payment_account.named("payment_account"), w),
        business_registration: kept(f.business_registration.named("business_registration"), w),
        warehouse: kept(f.warehouse.named("warehouse"), w),
        shop_url: kept(f.shop_url.named("shop_url"), w),
        listed_at: kept(f.listed_at.named("listed_at"), w),
        sold_count: kept(f.sold_count.named("sold_count"), w),
        contacts: kept(f.contacts.named("contacts"), w),
    }
}

/// An optional field's value, or its empty value with why it was left out said in `warnings`.
fn kept<T: Default>(value: Result<T, String>, warnings: &mut Vec<String>) -> T {
    value.unwrap_or_else(|e| {
        warnings.push(format!("{e}; field ignored"));
        T::default()
    })
}
