//! Identifier normalisation: the many ways people write one phone number, e-mail address, shop
//! URL, name or address become one comparable value.
//!
//! Phone numbers go to E.164 (`phonenumber`, a port of libphonenumber) with a configurable default
//! country; e-mail addresses are lower-cased; URLs become host and path; names, addresses and
//! account numbers are Unicode NFKC, case- and punctuation-folded. A value that cannot be
//! normalised is kept as given (folded) with a note; a value too short to mean anything (a phone
//! number of fewer than `MIN_PHONE_DIGITS` digits, all zeros) is dropped with a note. Nothing here
//! fails.

use std::str::FromStr;

use serde::Serialize;
use unicode_normalization::UnicodeNormalization;

use crate::scan::Seller;

/// Fewest digits a phone number must have to link anybody.
pub const MIN_PHONE_DIGITS: usize = 7;

/// Longest value kept (longer ones are garbage or an attack).
pub const MAX_VALUE_CHARS: usize = 256;

/// What kind of value links two sellers, and how strongly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A phone number (WhatsApp numbers are phone numbers).
    Phone,
    /// An e-mail address.
    Email,
    /// A WeChat id.
    Wechat,
    /// A WhatsApp number.
    Whatsapp,
    /// A QQ number.
    Qq,
    /// A Telegram handle.
    Telegram,
    /// A contact URL.
    Url,
    /// Another contact.
    Other,
    /// A bank or wallet account.
    PaymentAccount,
    /// A business registration number.
    BusinessRegistration,
    /// A warehouse address.
    Warehouse,
    /// The same listing photo.
    Photo,
    /// Near-identical seller names (weak).
    SellerName,
    /// Near-identical shop URLs (weak).
    ShopUrl,
    /// The same title template (weak).
    TitleTemplate,
}

impl Kind {
    /// The name used in JSON, CSV and `kind:value` strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Phone => "phone",
            Kind::Email => "email",
            Kind::Wechat => "wechat",
            Kind::Whatsapp => "whatsapp",
            Kind::Qq => "qq",
            Kind::Telegram => "telegram",
            Kind::Url => "url",
            Kind::Other => "other",
            Kind::PaymentAccount => "payment_account",
            Kind::BusinessRegistration => "business_registration",
            Kind::Warehouse => "warehouse",
            Kind::Photo => "photo",
            Kind::SellerName => "seller_name",
            Kind::ShopUrl => "shop_url",
            Kind::TitleTemplate => "title_template",
        }
    }

    /// The kind named `s` (as in `as_str`).
    pub fn parse(s: &str) -> Option<Kind> {
        const ALL: [Kind; 15] = [
            Kind::Phone,
            Kind::Email,
            Kind::Wechat,
            Kind::Whatsapp,
            Kind::Qq,
            Kind::Telegram,
            Kind::Url,
            Kind::Other,
            Kind::PaymentAccount,
            Kind::BusinessRegistration,
            Kind::Warehouse,
            Kind::Photo,
            Kind::SellerName,
            Kind::ShopUrl,
            Kind::TitleTemplate,
        ];
        let s = s.trim().to_ascii_lowercase();
        ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind whose values are compared with this one's: a WhatsApp number is a phone number.
    pub fn key_kind(self) -> Kind {
        match self {
            Kind::Whatsapp => Kind::Phone,
            k => k,
        }
    }

    /// Weight of one shared value of this kind in a case's evidence: an account or registration
    /// names a legal person, a contact reaches one, a warehouse or photo is a place or a habit.
    pub fn weight(self) -> f64 {
        match self {
            Kind::PaymentAccount | Kind::BusinessRegistration => 5.0,
            Kind::Phone
            | Kind::Email
            | Kind::Wechat
            | Kind::Whatsapp
            | Kind::Qq
            | Kind::Telegram => 3.0,
            Kind::Url | Kind::Other | Kind::Warehouse | Kind::Photo => 2.0,
            Kind::SellerName | Kind::ShopUrl | Kind::TitleTemplate => 0.5,
        }
    }
}

/// One normalised identifier of a seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// The kind as given (`whatsapp`, `phone`, ...).
    pub kind: Kind,
    /// The normalised value.
    pub value: String,
    /// The value as written in the listing.
    pub raw: String,
    /// Where a phone number points (ISO 3166 alpha-2), when known.
    pub country: Option<String>,
}

impl Identifier {
    /// The comparison key: key kind and value, `phone:+8613800138000`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.key_kind().as_str(), self.value)
    }
}

/// A seller's identifiers, and what could not be normalised (said once per value).
#[derive(Debug, Clone, Default)]
pub struct Normalised {
    /// Values that link (strong kinds only).
    pub ids: Vec<Identifier>,
    /// Values kept as given or dropped, with why.
    pub notes: Vec<String>,
}

/// Normalises values with settings: the default country of phone numbers.
#[derive(Debug, Clone)]
pub struct Normaliser {
    country: Option<phonenumber::country::Id>,
}

impl Normaliser {
    /// A normaliser for phone numbers without a country code from `default_country` (ISO 3166
    /// alpha-2; an unknown code means none: such numbers are kept as digits).
    pub fn new(default_country: &str) -> Normaliser {
        Normaliser {
            country: phonenumber::country::Id::from_str(
                &default_country.trim().to_ascii_uppercase(),
            )
            .ok(),
        }
    }

    /// Every strong identifier of a seller: `contact`, `contacts`, payment account, business
    /// registration and warehouse.
    pub fn seller(&self, s: &Seller) -> Normalised {
        let mut out = Normalised::default();
        let push = |r: Result<Option<Identifier>, String>, out: &mut Normalised| match r {
            Ok(Some(id)) if !out.ids.iter().any(|o| o.key() == id.key()) => out.ids.push(id),
            Ok(_) => {}
            Err(note) => out.notes.push(note),
        };
        for c in s.contact.iter().chain(&s.contacts) {
            let r = self.contact(c);
            push(r, &mut out);
        }
        let fields = [
            (Kind::PaymentAccount, &s.payment_account),
            (Kind::BusinessRegistration, &s.business_registration),
            (Kind::Warehouse, &s.warehouse),
        ];
        for (kind, v) in fields {
            if let Some(v) = v {
                push(self.value(kind, v), &mut out);
            }
        }
        out
    }

    /// A contact string: `kind:value`, or a bare value whose kind is guessed (an `@` makes an
    /// e-mail address, mostly digits a phone number, a dot and a slash a URL).
    pub fn contact(&self, text: &str) -> Result<Option<Identifier>, String> {
        let text = text.trim();
        if let Some((k, v)) = text.split_once(':') {
            if let Some(kind) =
                Kind::parse(k).filter(|k| k.key_kind() != Kind::Photo && k.weight() > 1.0)
            {
                return self.value(kind, v);
            }
        }
        let digits = text.chars().filter(char::is_ascii_digit).count();
        let phone_like = text.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let kind = if text.contains('@') && !text.starts_with('@') {
            Kind::Email
        } else if phone_like && digits > 0 {
            Kind::Phone
        } else if text.starts_with("http") || (text.contains('.') && text.contains('/')) {
            Kind::Url
        } else {
            Kind::Other
        };
        self.value(kind, text)
    }

    /// One value of a known kind: `Ok(None)` when it is empty or too short to link anybody,
    /// `Err` with a note when it was dropped for another reason. A value that cannot be
    /// normalised is kept folded, with a note in the identifier's place only through `notes`.
    pub fn value(&self, kind: Kind, raw: &str) -> Result<Option<Identifier>, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().count() > MAX_VALUE_CHARS {
            return Err(format!(
                "{} value of {} characters is longer than {MAX_VALUE_CHARS}; not used for links",
                kind.as_str(),
                raw.chars().count()
            ));
        }
        let make = |value: String, country: Option<String>| Identifier {
            kind,
            value,
            raw: raw.to_string(),
            country,
        };
        let value = match kind {
            Kind::Phone | Kind::Whatsapp => return self.phone(raw).map(|(v, c)| Some(make(v, c))),
            Kind::Email => {
                email(raw).map_err(|why| format!("e-mail {raw:?} {why}; not used for links"))?
            }
            Kind::Url | Kind::ShopUrl => url(raw).unwrap_or_else(|| fold(raw)),
            Kind::Telegram => fold(raw.trim_start_matches('@')),
            Kind::PaymentAccount | Kind::BusinessRegistration | Kind::Qq => compact(raw),
            _ => fold(raw),
        };
        if value.is_empty() {
            return Err(format!(
                "{} {raw:?} has no letters or digits; not used for links",
                kind.as_str()
            ));
        }
        Ok(Some(make(value, None)))
    }

    /// A phone number in E.164 and the country it points to; a number the library does not
    /// recognise is kept as its digits (with `+` when written international).
    fn phone(&self, raw: &str) -> Result<(String, Option<String>), String> {
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < MIN_PHONE_DIGITS {
            return Err(format!(
                "phone {raw:?} has fewer than {MIN_PHONE_DIGITS} digits; not used for links"
            ));
        }
        if digits.bytes().all(|d| d == b'0') || digits.bytes().all(|d| d == digits.as_bytes()[0]) {
            return Err(format!("phone {raw:?} is all one digit; not used for links"));
        }
        let cleaned = raw.trim();
        // 00 is the international prefix in most of the world: 0086... is +86...
        let text = match cleaned.strip_prefix("00") {
            Some(rest) => format!("+{rest}"),
            None => cleaned.to_string(),
        };
        // an international number is read without the default country
        let hint = if text.starts_with('+') { None } else { self.country };
        if let Ok(n) = phonenumber::parse(hint, &text) {
            if phonenumber::is_valid(&n) {
                let e164 = n.format().mode(phonenumber::Mode::E164).to_string();
                // the region of the number, else the main region of its country code
                let code = n.code().value();
                let main = || {
                    phonenumber::metadata::DATABASE
                        .region(&code)
                        .and_then(|r| r.first().map(|s| s.to_string()))
                };
                let country = n.country().id().map(|id| format!("{id:?}")).or_else(main);
                return Ok((e164, country));
            }
        }
        let international = text.starts_with('+');
        Ok((if international { format!("+{digits}") } else { digits }, None))
    }
}

/// An e-mail address lower-cased (`mailto:` and spaces removed), or why it is not one.
fn email(raw: &str) -> Result<String, &'static str> {
    let v: String = raw
        .trim()
        .trim_start_matches("mailto:")
        .nfkc()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase();
    match v.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(v)
        }
        _ => Err("is not an e-mail address"),
    }
}

/// A URL as its host (lower case, without `www.`) and path (without a trailing `/`); query and
/// fragment dropped. `None` when it does not parse as a URL.
pub fn url(raw: &str) -> Option<String> {
    let text = raw.trim();
    let with_scheme =
        if text.contains("://") { text.to_string() } else { format!("https://{text}") };
    let u = url::Url::parse(&with_scheme).ok()?;
    let host = u.host_str()?.trim_start_matches("www.").to_ascii_lowercase();
    if !host.contains('.') {
        return None;
    }
    let path = u.path().trim_end_matches('/');
    Some(format!("{host}{path}"))
}

/// Unicode NFKC, lower case, punctuation to spaces, runs of spaces to one: `Shenzhen, Bao'an
/// District` and `SHENZHEN BAO AN DISTRICT` differ only where a word was split.
pub fn fold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut space = false;
    for c in raw.nfkc().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        } else {
            space = true;
        }
    }
    out
}

/// `fold` without the spaces: `best-deals-88` and `Best Deals 88` are both `bestdeals88`.
pub fn compact(raw: &str) -> String {
    raw.nfkc().flat_map(char::to_lowercase).filter(|c| c.is_alphanumeric()).collect()
}

/// A title's template: folded, with every number replaced by `#` (the same wording with another
/// model number or price).
pub fn title_template(title: &str) -> String {
    let folded = fold(title);
    let mut out = String::with_capacity(folded.len());
    let mut in_number = false;
    for c in folded.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    // a price like 19.99 folds to `19 99`: one number
    while out.contains("# #") {
        out = out.replace("# #", "#");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(n: &Normaliser, s: &str) -> Option<String> {
        n.value(Kind::Phone, s).ok().flatten().map(|i| i.value)
    }

    #[test]
    fn phone_numbers_written_many_ways_are_one() {
        let n = Normaliser::new("CN");
        let want = Some("+8613800138000".to_string());
        for s in [
            "+86 138 0013 8000",
            "13800138000",
            "0086-138-0013-8000",
            "(+86) 138-0013-8000",
            "+8613800138000",
        ] {
            assert_eq!(phone(&n, s), want, "{s}");
        }
        let id = n.value(Kind::Whatsapp, "+86 138 0013 8000").unwrap().unwrap();
        assert_eq!(id.key(), "phone:+8613800138000");
        assert_eq!(id.country.as_deref(), Some("CN"));
        // another default country reads the national number differently, but not an international one
        let us = Normaliser::new("US");
        assert_eq!(phone(&us, "+86 138 0013 8000"), want);
        assert_eq!(
            us.value(Kind::Phone, "+86 138 0013 8000").unwrap().unwrap().country.as_deref(),
            Some("CN")
        );
        assert_eq!(phone(&us, "(305) 555-0199").as_deref(), Some("+13055550199"));
    }

    #[test]
    fn short_zero_and_garbage_values_link_nobody() {
        let n = Normaliser::new("CN");
        assert!(n.value(Kind::Phone, "12345").unwrap_err().contains("fewer than"));
        assert!(n.value(Kind::Phone, "000-0000-000").unwrap_err().contains("one digit"));
        assert!(n.value(Kind::Email, "not an address").unwrap_err().contains("not an e-mail"));
        assert!(n.value(Kind::Wechat, "!!!").unwrap_err().contains("no letters"));
        assert!(n.value(Kind::Other, &"x".repeat(300)).unwrap_err().contains("longer"));
        assert_eq!(n.value(Kind::Wechat, "   ").unwrap(), None);
        // a number the library does not know is kept as its digits
        assert_eq!(phone(&n, "+999 1234 5678 9").as_deref(), Some("+999123456789"));
    }

    #[test]
    fn emails_urls_names_and_accounts_fold() {
        let n = Normaliser::new("US");
        let v = |k, s| n.value(k, s).unwrap().unwrap().value;
        assert_eq!(v(Kind::Email, " Sales@BD88.Example "), "sales@bd88.example");
        assert_eq!(v(Kind::Url, "HTTPS://www.Shop.Example/BD88/?ref=1#top"), "shop.example/BD88");
        assert_eq!(v(Kind::Url, "shop.example/BD88/"), "shop.example/BD88");
        assert_eq!(
            v(Kind::Warehouse, "Bldg 5, Bao'an   District，SHENZHEN"),
            "bldg 5 bao an district shenzhen"
        );
        assert_eq!(v(Kind::PaymentAccount, "6222 0212-3456 7890"), "6222021234567890");
        assert_eq!(v(Kind::Wechat, "ＢＤ８８-Sales"), "bd88 sales");
        assert_eq!(compact("best-deals-88"), compact("Best Deals 88"));
        assert_eq!(
            title_template("Acme Diver 300 - only 19.99!"),
            title_template("acme diver 42 only 5")
        );
    }

    #[test]
    fn contacts_guess_their_kind() {
        let n = Normaliser::new("CN");
        let k = |s| n.contact(s).unwrap().unwrap();
        assert_eq!(k("wechat:BD88-sales").key(), "wechat:bd88 sales");
        assert_eq!(k("luxe4less@Mailbox.example").kind, Kind::Email);
        assert_eq!(k("+1 305 555 0199").value, "+13055550199");
        assert_eq!(k("https://t.me/bd88").kind, Kind::Url);
        assert_eq!(k("line: bd88").kind, Kind::Other);
        let s = Seller {
            contact: Some("wechat:x1".into()),
            contacts: vec!["WeChat:X1".into(), "phone:123".into()],
            warehouse: Some("Dock 1".into()),
            ..Seller::default()
        };
        let got = n.seller(&s);
        assert_eq!(got.ids.len(), 2, "{got:?}");
        assert_eq!(got.notes.len(), 1);
    }
}
