//! The gateway's contract, driven in-process through `tower::ServiceExt::oneshot`: Lambda's
//! status codes, error types and JSON shapes, on an `AppState` over SQLite and the fake
//! execution backend.

// clippy.toml allows unwrap inside #[test] functions; the harness helpers are test code too.
#![allow(clippy::unwrap_used)]

mod contract;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use gateway::{AppState, GatewayConfig, Services};
use http::{Method, Request, Response};
use http_body_util::BodyExt as _;
use packages::{Packages, PackagesConfig, SealKey};
use protocol::Price;
use scheduler::testing::{FakeBackend, version_config as config};
use scheduler::{Limits, Recorder, Scheduler};
use serde_json::Value;
use store::accounts::{Accounts, Credential, ServerKey};
use store::{Catalog, Db, LedgerConfig, Queue, Spool};
use tower::ServiceExt as _;

pub const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";
const HOST: &str = "localhost";

/// A gateway on the fake backend with one account and its access key.
pub struct Gateway {
    pub app: Router,
    pub fake: FakeBackend,
    pub catalog: Arc<Catalog>,
    pub key: Credential,
    _dir: tempfile::TempDir,
}

impl Gateway {
    pub async fn new() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("lamina.db"))
            .await
            .unwrap();
        let server_key = ServerKey::load_or_create(&dir.path().join("server.key")).unwrap();
        let packages = Packages::open(PackagesConfig::in_data_dir(
            dir.path(),
            SealKey::new(server_key.derive("packages")),
            REGION,
        ))
        .unwrap();
        let catalog = Arc::new(
            Catalog::load(db.clone(), packages.working_dir().to_owned(), REGION.into())
                .await
                .unwrap(),
        );
        let spool = Spool::open(&LedgerConfig::new(dir.path().join("ledger"))).unwrap();
        let fake = FakeBackend::new();
        let registry = prometheus::Registry::new();
        let scheduler = Scheduler::new(
            Arc::new(fake.clone()),
            Limits::default(),
            Recorder::new(spool.clone(), Price::default()),
            &registry,
        )
        .unwrap();
        let accounts = Accounts::new(db.clone(), server_key);
        accounts
            .create_account(Some(ACCOUNT), "root")
            .await
            .unwrap();
        let key = accounts.create_key(ACCOUNT, None).await.unwrap();
        let state = AppState::new(
            GatewayConfig {
                region: REGION.into(),
                public_url: format!("http://{HOST}"),
                price: Price::default(),
                quality_window: Duration::from_secs(3600),
                routing: scheduler::RoutingPolicy::default(),
            },
            Services {
                db: db.clone(),
                catalog: catalog.clone(),
                packages,
                scheduler,
                queue: Queue::new(db.clone()),
                spool,
                async_notify: Arc::new(tokio::sync::Notify::new()),
                accounts,
                metrics: registry,
                node: Arc::new(gateway::NodeIdentity::new(
                    "node-test".into(),
                    "incarnation-test".into(),
                    format!("http://{HOST}"),
                    store::Membership::new(db),
                )),
                hop_key: [7; 32],
            },
        );
        Gateway {
            app: gateway::app(state),
            fake,
            catalog,
            key,
            _dir: dir,
        }
    }

    /// Creates function `name` (only `$LATEST`) straight in the catalog.
    pub async fn function(&self, name: &str) {
        self.catalog
            .create_function(ACCOUNT, name, config(), BTreeMap::new(), false)
            .await
            .unwrap();
    }

    /// Sends `request` through the whole router.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        Reply::read(response).await
    }

    /// A request signed with SigV4 by the account's key, as botocore signs it.
    pub fn signed(&self, method: Method, path: &str, body: &[u8]) -> Request<Body> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let identity = aws_credential_types::Credentials::new(
            &self.key.access_key_id,
            &self.key.secret,
            None,
            None,
            "test",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(REGION)
            .name("lambda")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let url = format!("http://{HOST}{path}");
        let signable = SignableRequest::new(
            method.as_str(),
            &url,
            std::iter::once(("host", HOST)),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", HOST);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        request.body(Body::from(body.to_vec())).unwrap()
    }
}

/// A response read whole.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    async fn read(response: Response<Body>) -> Reply {
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
