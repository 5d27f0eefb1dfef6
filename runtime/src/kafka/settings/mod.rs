//! Runtime-wide Kafka settings: librdkafka properties from the environment or the
//! builder, layered under each consumer's own `config`, and the message size limit.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::error::{Error, Result};

/// The variable that names the brokers, as most Kafka tools read it.
pub const BOOTSTRAP_SERVERS_VAR: &str = "KAFKA_BOOTSTRAP_SERVERS";
/// The prefix of variables that set any librdkafka property.
pub const PROPERTY_PREFIX: &str = "EXACTLY_KAFKA_";
/// The variable of the message size limit, the one `EXACTLY_KAFKA_` variable that is
/// not a librdkafka property.
pub const SIZE_LIMIT_VAR: &str = "EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT";
/// The default message size limit: 4 MiB, four times the broker's default maximum.
pub const DEFAULT_SIZE_LIMIT: usize = 4 << 20;

/// Kafka settings shared by every consumer and by the producer behind
/// [`kafka::send`](crate::kafka::send), for
/// [`RuntimeBuilder::kafka`](crate::RuntimeBuilder::kafka).
///
/// Unset values come from the environment at launch:
///
/// | setting | variable |
/// |---|---|
/// | `bootstrap.servers` | `KAFKA_BOOTSTRAP_SERVERS` |
/// | any librdkafka property, e.g. `security.protocol` | `EXACTLY_KAFKA_SECURITY_PROTOCOL` (the property upper-cased, `.` as `_`) |
/// | message size limit (bytes, default 4 MiB) | `EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT` |
///
/// A consumer's own `config` function overrides these for that consumer.
///
/// A managed cluster over TLS with SCRAM (librdkafka is built with OpenSSL, so
/// `SSL` and `SASL_SSL` with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 all work):
///
/// ```no_run
/// # async fn launch() -> exactly_runtime::Result<()> {
/// use exactly_runtime::kafka::KafkaSettings;
///
/// let kafka = KafkaSettings::new()
///     .bootstrap_servers("broker-1.example.com:9094")
///     .set("security.protocol", "SASL_SSL")
///     .set("sasl.mechanism", "SCRAM-SHA-512")            // or SCRAM-SHA-256, PLAIN
///     .set("sasl.username", "orders-service")
///     .set("sasl.password", std::env::var("KAFKA_PASSWORD").map_err(exactly_runtime::Error::msg)?)
///     .set("ssl.ca.location", "/etc/ssl/certs/kafka-ca.pem"); // omit for a public CA
/// let runtime = exactly_runtime::Runtime::builder().kafka(kafka).launch().await?;
/// # runtime.shutdown().await
/// # }
/// ```
///
/// Secrets (`sasl.password`, private keys, client secrets) never appear in `Debug`,
/// logs or errors.
#[derive(Clone, Default)]
pub struct KafkaSettings {
    properties: BTreeMap<String, String>,
    message_size_limit: Option<usize>,
}

impl KafkaSettings {
    /// Settings with nothing set (the environment fills them in at launch).
    pub fn new() -> Self {
        Self::default()
    }

    /// The brokers to bootstrap from, `host:port[,host:port..]`.
    pub fn bootstrap_servers(self, servers: impl Into<String>) -> Self {
        self.set("bootstrap.servers", servers)
    }

    /// Sets any librdkafka property (see librdkafka's CONFIGURATION.md).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// Messages whose key, payload and headers together exceed this many bytes are
    /// not given to their workflow: each is recorded as a rejected message (a
    /// workflow row in ERROR with the message's coordinates and the reason).
    pub fn message_size_limit(mut self, bytes: usize) -> Self {
        self.message_size_limit = Some(bytes);
        self
    }
}

/// Secrets stay out of `Debug`, logs and errors.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> =
            self.properties.iter().map(|(k, v)| (k.as_str(), shown(k, v))).collect();
        f.debug_struct("KafkaSettings")
            .field("properties", &properties)
            .field("message_size_limit", &self.message_size_limit)
            .finish()
    }
}

/// Whether a librdkafka property holds a secret (a password, a private key, a
/// client secret, or a configuration string that may embed one).
pub(crate) fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "key.pem", "ssl_key", "jaas", "oauthbearer.config", "token"].iter().any(|s| key.contains(s))
}

/// A property's value as it may be shown: secrets as `[redacted]`.
pub(crate) fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) { "[redacted]" } else { value }
}

/// One property and where it was set, for error messages.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Property {
    pub key: String,
    pub value: String,
    pub source: String,
}

impl std::fmt::Debug for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Property")
            .field("key", &self.key)
            .field("value", &shown(&self.key, &self.value))
            .field("source", &self.source)
            .finish()
    }
}

/// The settings in force: the environment, overridden by the builder.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub properties: Vec<Property>,
    pub message_size_limit: usize,
}

const FROM_BUILDER: &str = "Runtime::builder().kafka(..)";

impl Resolved {
    /// Reads the environment under the builder's settings.
    pub fn new(builder: Option<&KafkaSettings>) -> Result<Resolved> {
        Resolved::from_vars(builder, std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))))
    }

    pub fn from_vars(
        builder: Option<&KafkaSettings>,
        vars: impl IntoIterator<Item = (String, std::ffi::OsString)>,
    ) -> Result<Resolved> {
        let mut properties: BTreeMap<String, Property> = BTreeMap::new();
        let mut message_size_limit = None;
        let mut vars: Vec<_> = vars.into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, value) in vars {
            let key = if name == BOOTSTRAP_SERVERS_VAR {
                "bootstrap.servers".to_owned()
            } else if let Some(rest) = name.strip_prefix(PROPERTY_PREFIX).filter(|rest| !rest.is_empty()) {
                rest.to_ascii_lowercase().replace('_', ".")
            } else {
                continue;
            };
            let value = value.into_string().map_err(|_| Error::Config(format!("{name} is not valid UTF-8")))?;
            if name == SIZE_LIMIT_VAR {
                message_size_limit = Some(parse_limit(&value, SIZE_LIMIT_VAR)?);
                continue;
            }
            // `EXACTLY_KAFKA_BOOTSTRAP_SERVERS` wins over the general `KAFKA_BOOTSTRAP_SERVERS`.
            if name == BOOTSTRAP_SERVERS_VAR && properties.contains_key(&key) {
                continue;
            }
            properties.insert(key.clone(), Property { key, value, source: name });
        }
        if let Some(builder) = builder {
            for (key, value) in &builder.properties {
                let source = format!("{FROM_BUILDER} (`{key}`)");
                properties.insert(key.clone(), Property { key: key.clone(), value: value.clone(), source });
            }
            message_size_limit = builder.message_size_limit.or(message_size_limit);
        }
        let message_size_limit = message_size_limit.unwrap_or(DEFAULT_SIZE_LIMIT);
        if message_size_limit == 0 {
            return Err(Error::Config("the Kafka message size limit must be at least 1 byte".into()));
        }
        Ok(Resolved { properties: properties.into_values().collect(), message_size_limit })
    }

    /// Where the brokers come from, if anywhere.
    pub fn has_bootstrap_servers(&self) -> bool {
        self.properties.iter().any(|p| p.key == "bootstrap.servers" && !p.value.trim().is_empty())
    }

    /// The runtime-wide properties as a librdkafka configuration, with their sources.
    pub fn client_config(&self) -> (ClientConfig, BTreeMap<String, String>) {
        let mut config = ClientConfig::new();
        let mut sources = BTreeMap::new();
        for p in &self.properties {
            config.set(&p.key, &p.value);
            sources.insert(p.key.clone(), p.source.clone());
        }
        (config, sources)
    }
}

fn parse_limit(text: &str, var: &str) -> Result<usize> {
    text.trim().parse().map_err(|e| Error::Config(format!("{var}={text:?} is invalid: {e} (expected a number of bytes)")))
}

/// Turns librdkafka's refusal of a property into an error that names where it was set.
pub(crate) fn config_error(e: rdkafka::error::KafkaError, sources: &BTreeMap<String, String>, client: &str) -> Error {
    match &e {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, value) => {
            let source = sources.get(key).map_or_else(String::new, |s| format!(" (set by {s})"));
            let value = shown(key, value);
            let description = if is_secret(key) { "the value is invalid" } else { description.as_str() };
            Error::Config(format!("Kafka property `{key}` = {value:?}{source} is rejected by librdkafka for {client}: {description}"))
        }
        _ => Error::Config(format!("cannot create the Kafka client for {client}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, std::ffi::OsString)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.into())).collect()
    }

    #[test]
    fn environment_variables_become_librdkafka_properties() {
        let resolved = Resolved::from_vars(
            None,
            vars(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "a:9092"),
                ("EXACTLY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                ("EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT", "1000"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        let keys: Vec<_> = resolved.properties.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
        assert_eq!(keys, [("bootstrap.servers", "a:9092"), ("security.protocol", "SASL_SSL")]);
        assert_eq!(resolved.message_size_limit, 1000);
        assert!(resolved.has_bootstrap_servers());
    }

    #[test]
    fn the_builder_wins_over_the_environment() {
        let builder = KafkaSettings::new().bootstrap_servers("b:9092").message_size_limit(5);
        let resolved = Resolved::from_vars(
            Some(&builder),
            vars(&[("KAFKA_BOOTSTRAP_SERVERS", "a:9092"), ("EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT", "1000")]),
        )
        .unwrap();
        assert_eq!(resolved.properties[0].value, "b:9092");
        assert!(resolved.properties[0].source.contains("Runtime::builder().kafka(..)"));
        assert_eq!(resolved.message_size_limit, 5);
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let settings = KafkaSettings::new().set("sasl.password", "hunter2").set("ssl.key.pem", "-----BEGIN").set("sasl.username", "me");
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("BEGIN") && shown.contains("me"), "{shown}");
        let resolved = Resolved::from_vars(Some(&settings), vars(&[("EXACTLY_KAFKA_SASL_PASSWORD", "env-secret")])).unwrap();
        let shown = format!("{resolved:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("env-secret"), "{shown}");
        let (mut config, sources) = resolved.client_config();
        config.set("sasl.password", "hunter2").set("ssl.key.password", "hunter2");
        config.set("ssl.keystore.password", "hunter2");
        let refused = rdkafka::error::KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "invalid value hunter2".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let err = config_error(refused, &sources, "a consumer").to_string();
        assert!(!err.contains("hunter2") && err.contains("sasl.password") && err.contains("Runtime::builder()"), "{err}");
    }

    #[test]
    fn a_bad_size_limit_names_the_variable() {
        let err = Resolved::from_vars(None, vars(&[("EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT", "big")])).unwrap_err();
        assert!(err.to_string().contains("EXACTLY_KAFKA_MESSAGE_SIZE_LIMIT=\"big\""), "{err}");
        let resolved = Resolved::from_vars(None, vars(&[])).unwrap();
        assert_eq!(resolved.message_size_limit, DEFAULT_SIZE_LIMIT);
        assert!(!resolved.has_bootstrap_servers());
    }
}
