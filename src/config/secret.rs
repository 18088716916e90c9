//! A string that never prints: secrets in settings (admin token, token secret, passwords in
//! pass-through Kafka properties) are held in [`Secret`], whose `Debug` and `Display` both
//! write `[redacted]`, so a `{:?}` of the settings in a log line or a panic cannot leak them.

use std::fmt;

/// The example secrets of scripts/up.sh (and of the docs' curl examples) contain this; they
/// are refused without --insecure-dev, so an example never guards a real on-sale.
pub(crate) const EXAMPLE_MARK: &str = "change-me";

/// A secret string. Read it with [`Secret::expose`], at the one place that needs the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call it only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Read from a settings file (`QUEUEGATE_ADMIN_TOKENS_FILE`) as a plain JSON string.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as serde::Deserialize>::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-hunter2");
    }
}
