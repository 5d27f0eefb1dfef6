//! SQS clients: the default one from the standard AWS configuration chain, the
//! HTTPS client every client needs, and where a receiver or consumer gets its own.

use std::sync::Arc;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::SharedHttpClient;
use futures_util::future::BoxFuture;

use crate::error::{Error, Result};

/// Builds a client when the runtime launches.
pub type ClientFactory = Arc<dyn Fn() -> BoxFuture<'static, Client> + Send + Sync>;

/// Where a receiver or a consumer gets its client.
#[derive(Clone)]
pub(crate) enum ClientSource {
    /// A client built by the user.
    Client(Client),
    /// `client = path` on the attribute.
    Fn(fn() -> Client),
    /// An async factory, called once at launch.
    Factory(ClientFactory),
}

impl std::fmt::Debug for ClientSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientSource::Client(_) => "Client",
            ClientSource::Fn(_) => "Fn",
            ClientSource::Factory(_) => "Factory",
        })
    }
}

impl ClientSource {
    pub async fn get(&self) -> Client {
        match self {
            ClientSource::Client(client) => client.clone(),
            ClientSource::Fn(f) => f(),
            ClientSource::Factory(factory) => factory().await,
        }
    }
}

/// A new HTTPS client (hyper with rustls on ring, the system's root certificates),
/// as `exactly`'s own SQS clients use. Not shared between calls: a pooled
/// connection belongs to the tokio runtime that opened it.
///
/// `exactly` builds the SDK without its default HTTPS client (which would compile
/// aws-lc), so a client built by hand from `aws_sdk_sqs::Config::builder()` needs
/// this one (or another) set with `.http_client(exactly::sqs::http_client())`.
pub fn http_client() -> SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// A client configured by the standard AWS chain: region, credentials and endpoint
/// from the environment (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL_SQS`
/// or `AWS_ENDPOINT_URL`, ...), the shared config files and the instance metadata.
pub async fn default_client() -> Result<Client> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client()).load().await;
    if config.region().is_none() {
        return Err(Error::Config(
            "no AWS region for the default SQS client: set AWS_REGION (or a region in ~/.aws/config), or give the SQS receiver a client".into(),
        ));
    }
    Ok(Client::new(&config))
}
