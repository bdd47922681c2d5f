//! Where a ccxt symbol's candles live in the archive: the market (`spot`, `futures/um`,
//! `futures/cm`), the archive's symbol id and the interval name.

use crate::ohlcv::Period;

use super::error::{Result, VisionError};

/// A market of the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Market {
    Spot,
    /// USDⓈ-M futures (linear: settled in the quote currency).
    Um,
    /// COIN-M futures (inverse: settled in the base currency).
    Cm,
}

impl Market {
    pub fn parse(name: &str) -> Result<Market> {
        match name.to_ascii_lowercase().as_str() {
            "spot" => Ok(Market::Spot),
            "um" | "futures/um" | "usdm" | "linear" => Ok(Market::Um),
            "cm" | "futures/cm" | "coinm" | "inverse" => Ok(Market::Cm),
            _ => Err(VisionError::InvalidArgument(format!(
                "unknown market {name:?}; expected \"spot\", \"um\" (USDⓈ-M futures) or \"cm\" (COIN-M futures)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Um => "um",
            Market::Cm => "cm",
        }
    }

    /// The market's folder under `data/`.
    pub fn path(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Um => "futures/um",
            Market::Cm => "futures/cm",
        }
    }
}

/// A symbol as the archive names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub market: Market,
    pub id: String,
}

/// The archive market and id of a ccxt unified symbol, as ccxt's binance maps them:
/// `BTC/USDT` → spot `BTCUSDT`; `BTC/USDT:USDT` (linear) → `um` `BTCUSDT`; `BTC/USD:BTC`
/// (inverse) → `cm` `BTCUSD_PERP`; a dated future `BTC/USD:BTC-250926` → `BTCUSD_250926`.
/// A symbol without `/` is taken as an archive id as it is (delisted or renamed symbols).
/// `market` and `id` override what is inferred.
pub fn infer(symbol: &str, market: Option<Market>, id: Option<&str>) -> Result<Target> {
    let (pair, settle) = match symbol.split_once(':') {
        Some((p, s)) => (p, Some(s)),
        None => (symbol, None),
    };
    let (settle, expiry) = match settle.map(|s| s.split_once('-')) {
        Some(Some((s, e))) => (Some(s), Some(e)),
        Some(None) => (settle, None),
        None => (None, None),
    };
    let parts = pair.split_once('/');
    let inferred = match (parts, settle) {
        (None, _) => Market::Spot,
        (Some(_), None) => Market::Spot,
        (Some((base, quote)), Some(s)) if s == quote && s != base => Market::Um,
        (Some((base, _)), Some(s)) if s == base => Market::Cm,
        (Some(_), Some(s)) => {
            return Err(VisionError::InvalidArgument(format!(
                "cannot tell the archive market of {symbol:?}: it settles in {s}, neither its base nor its quote; pass market= and market_id="
            )));
        }
    };
    let market = market.unwrap_or(inferred);
    let id = match (id, parts) {
        (Some(id), _) => id.to_owned(),
        (None, None) => pair.to_owned(),
        (None, Some((base, quote))) => {
            let pair_id = format!("{base}{quote}");
            match (market, expiry) {
                (Market::Spot, _) => pair_id,
                (_, Some(e)) => format!("{pair_id}_{e}"),
                (Market::Cm, None) => format!("{pair_id}_PERP"),
                (Market::Um, None) => pair_id,
            }
        }
    };
    let id = id.to_ascii_uppercase();
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(VisionError::InvalidArgument(format!(
            "{id:?} is not an archive symbol id (letters, digits, '_' and '-' only, e.g. \"BTCUSDT\")"
        )));
    }
    Ok(Target { market, id })
}

/// The interval as the archive's paths spell it (`1M` is `1mo`, since some file systems
/// ignore case).
pub fn interval(period: &Period) -> &'static str {
    match period.name() {
        "1M" => "1mo",
        other => other,
    }
}

/// Whether the archive has daily files of this period (`1s` … `1d`); `3d`, `1w` and `1M`
/// come only as monthly files.
pub fn has_daily(period: &Period) -> bool {
    !matches!(period.name(), "3d" | "1w" | "1M")
}

/// Refuse what the archive does not have.
pub fn check(period: &Period, target: &Target) -> Result<()> {
    if period.name() == "1s" && target.market != Market::Spot {
        return Err(VisionError::InvalidArgument(format!(
            "the archive has 1s candles for spot markets only, not for {} futures; use 1m or longer",
            target.market.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(symbol: &str) -> (Market, String) {
        let t = infer(symbol, None, None).unwrap();
        (t.market, t.id)
    }

    #[test]
    fn ccxt_symbols_map_as_ccxt_does() {
        assert_eq!(t("BTC/USDT"), (Market::Spot, "BTCUSDT".into()));
        assert_eq!(t("BTC/USDT:USDT"), (Market::Um, "BTCUSDT".into()));
        assert_eq!(t("BTC/USD:BTC"), (Market::Cm, "BTCUSD_PERP".into()));
        assert_eq!(
            t("BTC/USD:BTC-250926"),
            (Market::Cm, "BTCUSD_250926".into())
        );
        assert_eq!(t("ETH/USDC:USDC"), (Market::Um, "ETHUSDC".into()));
        assert_eq!(t("nanousdt"), (Market::Spot, "NANOUSDT".into()));
    }

    #[test]
    fn overrides_and_bad_ids() {
        let x = infer("XNO/USDT", None, Some("NANOUSDT")).unwrap();
        assert_eq!(x.id, "NANOUSDT");
        let y = infer("BTC/USD", Some(Market::Cm), None).unwrap();
        assert_eq!(y.id, "BTCUSD_PERP");
        assert!(infer("../etc", None, None).is_err());
        assert!(infer("BTC/USDT:ETH", None, None).is_err());
        assert!(Market::parse("options").is_err());
    }
}
