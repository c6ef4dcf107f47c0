//! The config service ([`Service::Config`](super::Service::Config)): one request, travelling as
//! JSON `null`, answered with the plugin's validated configuration (`null` when none was given).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Op, Service};

/// Asks for the plugin's configuration. Encodes as `null`, as plugin-api 0.1.0 sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get;

impl Op for Get {
    const SERVICE: Service = Service::Config;
    type Request = Get;
    type Response = Value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_null_both_ways() {
        assert_eq!(serde_json::to_vec(&Get).unwrap(), b"null");
        assert_eq!(serde_json::from_slice::<Get>(b"null").unwrap(), Get);
        assert!(serde_json::from_slice::<Get>(b"{}").is_err());
    }
}
