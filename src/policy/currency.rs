//! Exchange rates (`[currency]`): prices in different currencies are converted to one base
//! currency before they are compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Exchange rates: the value of one unit of each currency in `base`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CurrencyConfig {
    /// The currency prices are converted to before they are compared.
    pub base: String,
    /// Value of one unit of each currency (ISO 4217 code) in the base currency.
    pub rates: BTreeMap<String, f64>,
}

impl Default for CurrencyConfig {
    fn default() -> Self {
        let rates = [
            ("EUR", 1.0),
            ("USD", 0.86),
            ("GBP", 1.14),
            ("CHF", 1.07),
            ("SEK", 0.091),
            ("NOK", 0.085),
            ("DKK", 0.134),
            ("PLN", 0.235),
            ("JPY", 0.0056),
            ("CNY", 0.12),
            ("CAD", 0.62),
            ("AUD", 0.56),
        ];
        CurrencyConfig {
            base: "EUR".into(),
            rates: rates.iter().map(|(c, r)| (c.to_string(), *r)).collect(),
        }
    }
}

impl CurrencyConfig {
    /// Converts `amount` in `currency` to the base currency, or `None` when the rate is unknown.
    pub fn to_base(&self, amount: f64, currency: &str) -> Option<f64> {
        let code = currency.trim().to_ascii_uppercase();
        if code == self.base {
            return Some(amount);
        }
        self.rates.get(&code).map(|rate| amount * rate)
    }
}
