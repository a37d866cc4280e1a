//! One stack per test: the template's tables, topic and state machine,
//! created through the SDK under a unique prefix, the four functions wired
//! to them, and helpers that call the functions as API Gateway and the
//! agents would.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governance::adapters::aws::aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType,
};
use governance::adapters::aws::{
    aws_config, aws_sdk_cloudwatch, aws_sdk_dynamodb, aws_sdk_sfn, aws_sdk_sns,
};
use governance::auth::{ClaimMapping, Claims, TokenUse};
use governance::handlers::approval_callback::ApprovalCallbackHandler;
use governance::handlers::authorize::{app, AuthorizePorts};
use governance::handlers::config::{
    AgentTokenConfig, ApprovalCallbackConfig, AuthorizeConfig, DecisionLogConfig,
    DenialMetricsConfig, GatewayConfig, SignInEnv,
};
use governance::handlers::decision_log::DecisionLogHandler;
use governance::handlers::denial_metrics::DenialMetricsHandler;
use governance::handlers::gateway::GatewayPorts;
use governance::model::Environment;
use serde_json::{json, Value};

use crate::emulator::{
    emulator, workspace_root, Emulator, Functions, ACCOUNT, APPROVER_AUDIENCE, AUDIENCE, ISSUER,
    REGION,
};

/// How often the authorize function re-reads the active version in tests.
pub const REFRESH: Duration = Duration::from_secs(1);
/// The credential every stack's gateway presents to the credit bureau's
/// upstream (its Secrets Manager secret `STACK/upstream/credit-bureau`).
pub const UPSTREAM_SECRET: &str = "bureau-secret-on-aws";
/// The audience of the OAuth access tokens MCP clients present at the
/// gateway's `/oauth/mcp`.
pub const MCP_AUDIENCE: &str = "agent-governance-mcp";

/// What a test may configure differently from the template's defaults.
#[derive(Clone)]
pub struct StackOptions {
    /// `POLICY_MAX_STALENESS_SECONDS` of authorize.
    pub max_staleness: Duration,
    /// `OIDC_ISSUER`: the issuer of user tokens (its JWKS is the router's).
    pub oidc_issuer: String,
    /// `OIDC_AUDIENCE`.
    pub oidc_audience: String,
    /// `OIDC_USER_ID_CLAIM`, `OIDC_ROLES_CLAIM`, `OIDC_ORG_CLAIM`.
    pub claims: ClaimMapping,
    /// The clock authorize decides by (the system clock when absent).
    pub clock: Option<Arc<dyn governance::ports::Clock>>,
}

impl std::fmt::Debug for StackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackOptions")
            .field("max_staleness", &self.max_staleness)
            .field("oidc_issuer", &self.oidc_issuer)
            .field("claims", &self.claims)
            .field("clock", &self.clock.as_ref().map(|_| "injected"))
            .finish_non_exhaustive()
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            max_staleness: Duration::from_secs(60),
            oidc_issuer: ISSUER.into(),
            oidc_audience: AUDIENCE.into(),
            claims: ClaimMapping::default(),
            clock: None,
        }
    }
}

/// The SDK clients of the tests themselves.
pub struct Clients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// Step Functions.
    pub sfn: aws_sdk_sfn::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// CloudWatch.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// S3 (path-style, as against any emulator).
    pub s3: aws_sdk_s3::Client,
}

/// A provisioned stack.
pub struct Stack {
    /// The prefix of every resource.
    pub name: String,
    /// The state machine.
    pub state_machine_arn: String,
    /// The tests' clients.
    pub clients: Clients,
    /// The emulator.
    pub emu: &'static Emulator,
    sdk: aws_config::SdkConfig,
    shard_iterators: std::sync::Mutex<Vec<String>>,
    options: StackOptions,
}

/// The SDK configuration every client of the tests and handlers uses.
async fn sdk(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await
}

/// A fresh stack name.
fn unique(label: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{label}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The name of a table of `stack`, as the template names it.
pub fn table(stack: &str, suffix: &str) -> String {
    format!("{stack}-{suffix}")
}

fn function_arn(stack: &str, function: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{stack}-{function}")
}

impl Stack {
    /// Provisions a stack, pushes `policy` with `govctl policy push`, and
    /// wires the functions.
    pub fn new(label: &str, policy: &Path) -> Stack {
        Self::with_options(label, policy, StackOptions::default())
    }

    /// [`Stack::new`], with authorize configured by `options`.
    pub fn with_options(label: &str, policy: &Path, options: StackOptions) -> Stack {
        let emu = emulator();
        let name = unique(label);
        let stack = emu.block_on(async {
            let sdk = sdk(&emu.url).await;
            let clients = Clients {
                dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
                streams: aws_sdk_dynamodbstreams::Client::new(&sdk),
                sfn: aws_sdk_sfn::Client::new(&sdk),
                sns: aws_sdk_sns::Client::new(&sdk),
                cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
                s3: aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(&sdk)
                        .force_path_style(true)
                        .build(),
                ),
            };
            let stack = Stack {
                state_machine_arn: format!(
                    "arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}-approval"
                ),
                name,
                clients,
                emu,
                sdk,
                shard_iterators: std::sync::Mutex::new(Vec::new()),
                options,
            };
            stack.create_tables().await;
            stack.create_evidence_bucket().await;
            stack.create_state_machine().await;
            stack
        });
        stack.push(policy, "initial version");
        let topic_arn = emu.block_on(stack.create_topic());
        emu.block_on(stack.wire(&topic_arn));
        stack
    }

    async fn create_tables(&self) {
        let s = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute")
        };
        let key = |n: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .expect("key")
        };
        let n = AttributeDefinition::builder()
            .attribute_name("window_start")
            .attribute_type(ScalarAttributeType::N)
            .build()
            .expect("attribute");
        let tables = [
            (
                "tool-policy",
                vec![s("agent_id"), s("tool_id")],
                vec![
                    key("agent_id", KeyType::Hash),
                    key("tool_id", KeyType::Range),
                ],
                false,
            ),
            (
                "policy-versions",
                vec![s("pk"), s("sk")],
                vec![key("pk", KeyType::Hash), key("sk", KeyType::Range)],
                false,
            ),
            (
                "decisions",
                vec![s("pk")],
                vec![key("pk", KeyType::Hash)],
                true,
            ),
            (
                "approvals",
                vec![s("approval_id")],
                vec![key("approval_id", KeyType::Hash)],
                false,
            ),
            (
                "audit-chain",
                vec![s("partition")],
                vec![key("partition", KeyType::Hash)],
                false,
            ),
            (
                "counters",
                vec![s("pk"), n],
                vec![
                    key("pk", KeyType::Hash),
                    key("window_start", KeyType::Range),
                ],
                false,
            ),
        ];
        for (suffix, attrs, keys, stream) in tables {
            let mut create = self
                .clients
                .dynamodb
                .create_table()
                .table_name(table(&self.name, suffix))
                .set_attribute_definitions(Some(attrs))
                .set_key_schema(Some(keys))
                .billing_mode(BillingMode::PayPerRequest);
            if stream {
                create = create.stream_specification(
                    StreamSpecification::builder()
                        .stream_enabled(true)
                        .stream_view_type(StreamViewType::NewImage)
                        .build()
                        .expect("stream"),
                );
            }
            create.send().await.expect("create table");
        }
    }

    /// The evidence bucket, as the template makes it: versioned, with Object
    /// Lock and a default retention (GOVERNANCE, one day, in tests).
    async fn create_evidence_bucket(&self) {
        use aws_sdk_s3::types::{
            DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
            ObjectLockRule,
        };
        let bucket = self.evidence_bucket();
        self.clients
            .s3
            .create_bucket()
            .bucket(&bucket)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("create bucket");
        self.clients
            .s3
            .put_object_lock_configuration()
            .bucket(&bucket)
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(ObjectLockRetentionMode::Governance)
                                    .days(1)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("object lock configuration");
    }

    /// The stack's own metrics namespace: tests run in parallel on one
    /// emulator, and each counts only its own stack's data points.
    pub fn metrics_namespace(&self) -> String {
        format!("{}/{}", governance::metrics::NAMESPACE, self.name)
    }

    /// Runs the anomaly-watch function's handler once, as its schedule
    /// would, deciding by `clock` (the one authorize decides by).
    pub fn run_anomaly_watch(&self, clock: Arc<dyn governance::ports::Clock>) -> Value {
        let mut handler = governance::handlers::anomaly_watch::AnomalyWatchHandler::aws(
            &governance::handlers::config::AnomalyWatchConfig {
                policy_table: table(&self.name, "policy-versions"),
                decisions_table: table(&self.name, "decisions"),
                counters_table: table(&self.name, "counters"),
                namespace: self.metrics_namespace(),
            },
            &self.sdk,
        );
        handler.clock = clock;
        self.emu
            .block_on(handler.handle(json!({"source": "aws.scheduler"})))
            .expect("anomaly-watch")
    }

    /// The value of the stack's audit key secret.
    pub fn audit_secret_value(&self) -> String {
        format!("{}-{}", self.name, "0123456789abcdefghijklmnopqrstuvwxyz")
    }

    /// The value of the stack's session secret, which signs approvers' sessions.
    pub fn session_secret_value(&self) -> String {
        format!(
            "{}-{}",
            self.name, "session-secret-0123456789abcdefghijklmnop"
        )
    }

    /// A session cookie (`agov_session=…`) for `who` in `groups`, expiring
    /// `expires_in` seconds from now, signed with `key` (the stack's own
    /// session secret when `None`).
    pub fn session_cookie(
        &self,
        who: &str,
        groups: &[&str],
        expires_in: i64,
        key: Option<&[u8]>,
    ) -> String {
        let now = crate::common::unix_now();
        let secret = self.session_secret_value();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({
                "aud": "agent-governance/session", "iat": now, "exp": now + expires_in,
                "sub": who, "groups": groups,
            }),
            &jsonwebtoken::EncodingKey::from_secret(key.unwrap_or(secret.as_bytes())),
        )
        .expect("sign a session");
        format!("agov_session={token}")
    }

    /// The audit key's public half, as decision-log logs it (hex).
    pub fn audit_public_key(&self) -> String {
        let key =
            governance::audit::digest::SecretAuditKey::from_secret(&self.audit_secret_value())
                .expect("a long enough secret");
        hex::encode(key.public_key())
    }

    /// The evidence bucket's name.
    pub fn evidence_bucket(&self) -> String {
        format!("{}-evidence", self.name).to_ascii_lowercase()
    }

    async fn create_state_machine(&self) {
        let asl = std::fs::read_to_string(workspace_root().join("statemachines/approval.asl.json"))
            .expect("statemachines/approval.asl.json");
        // CloudFormation's DefinitionSubstitutions, done here as the template does them.
        let definition = asl
            .replace(
                "${DecisionLogFunctionArn}",
                &function_arn(&self.name, "decision-log"),
            )
            .replace(
                "${ApprovalCallbackFunctionArn}",
                &function_arn(&self.name, "approval-callback"),
            )
            .replace(
                "${DenialMetricsFunctionArn}",
                &function_arn(&self.name, "denial-metrics"),
            )
            .replace(
                "${ApprovalBaseUrl}",
                &format!("https://{}.approvals.test", self.name),
            );
        assert!(!definition.contains("${"), "every substitution is made");
        self.clients
            .sfn
            .create_state_machine()
            .name(format!("{}-approval", self.name))
            .definition(definition)
            .role_arn(format!(
                "arn:aws:iam::{ACCOUNT}:role/{}-approval",
                self.name
            ))
            .send()
            .await
            .expect("create state machine");
    }

    async fn create_topic(&self) -> String {
        let topic = self
            .clients
            .sns
            .create_topic()
            .name(format!("{}-approvals", self.name))
            .send()
            .await
            .expect("create topic")
            .topic_arn
            .expect("topic arn");
        self.clients
            .sns
            .subscribe()
            .topic_arn(&topic)
            .protocol("http")
            .endpoint(format!("{}/sns/{}", self.emu.url, self.name))
            .send()
            .await
            .expect("subscribe");
        topic
    }

    async fn wire(&self, topic_arn: &str) {
        let authorize = AuthorizeConfig {
            environment: Environment::Dev,
            policy_table: table(&self.name, "policy-versions"),
            decisions_table: table(&self.name, "decisions"),
            approvals_table: table(&self.name, "approvals"),
            counters_table: table(&self.name, "counters"),
            state_machine_arn: self.state_machine_arn.clone(),
            oidc_issuer: self.options.oidc_issuer.clone(),
            oidc_audience: self.options.oidc_audience.clone(),
            oidc_jwks_url: self.emu.jwks_url(),
            oidc_claims: self.options.claims.clone(),
            policy_refresh: REFRESH,
            policy_max_staleness: self.options.max_staleness,
        };
        let mut ports = AuthorizePorts::aws(&authorize, &self.sdk).expect("authorize ports");
        if let Some(clock) = &self.options.clock {
            ports.clock = Arc::clone(clock);
        }
        // The template's AuditKeySecret, as Secrets Manager generates it.
        let audit_secret = format!("{}-audit-key", self.name);
        governance::adapters::aws::aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(&audit_secret)
            .secret_string(self.audit_secret_value())
            .send()
            .await
            .expect("create the audit key secret");
        // The template's SessionSecret, as Secrets Manager generates it.
        governance::adapters::aws::aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(format!("{}-session-key", self.name))
            .secret_string(self.session_secret_value())
            .send()
            .await
            .expect("create the session secret");
        // The gateway's upstream credentials, as an operator stores them.
        let secrets = governance::adapters::aws::aws_sdk_secretsmanager::Client::new(&self.sdk);
        secrets
            .create_secret()
            .name(format!("{}/upstream/credit-bureau", self.name))
            .secret_string(UPSTREAM_SECRET)
            .send()
            .await
            .expect("create the upstream credential");
        let gateway_config = GatewayConfig {
            authorize: authorize.clone(),
            secrets_prefix: format!("{}/upstream", self.name),
            authorization_servers: Vec::new(),
            // MCP clients' access tokens: the emulator's issuer, the client
            // in `sub`.
            agent_tokens: Some(AgentTokenConfig {
                issuer: ISSUER.into(),
                audience: MCP_AUDIENCE.into(),
                jwks_url: self.emu.jwks_url(),
                client_claim: "sub".into(),
            }),
        };
        let mut gateway_ports =
            GatewayPorts::aws(&gateway_config, &self.sdk).expect("gateway ports");
        if let Some(clock) = &self.options.clock {
            gateway_ports.authorize.clock = Arc::clone(clock);
        }
        let functions = Functions {
            authorize: app(&authorize, ports).await.expect("authorize app"),
            gateway: governance::handlers::gateway::app(&gateway_config, gateway_ports)
                .await
                .expect("gateway app"),
            decision_log: Arc::new(DecisionLogHandler::aws(
                &DecisionLogConfig {
                    decisions_table: table(&self.name, "decisions"),
                    approvals_table: table(&self.name, "approvals"),
                    evidence_bucket: self.evidence_bucket(),
                    audit_chain_table: table(&self.name, "audit-chain"),
                    audit_key_secret: audit_secret.clone(),
                },
                &self.sdk,
                governance::adapters::aws::evidence::audit_key(&self.sdk, &audit_secret)
                    .await
                    .expect("the audit key"),
            )),
            denial_metrics: Arc::new(DenialMetricsHandler::aws(
                &DenialMetricsConfig {
                    namespace: self.metrics_namespace(),
                },
                &self.sdk,
            )),
            approval_callback: ApprovalCallbackHandler::aws(
                &ApprovalCallbackConfig {
                    approvals_table: table(&self.name, "approvals"),
                    decisions_table: table(&self.name, "decisions"),
                    topic_arn: topic_arn.into(),
                    approver_issuer: ISSUER.into(),
                    approver_audience: APPROVER_AUDIENCE.into(),
                    approver_jwks_url: self.emu.jwks_url(),
                    approver_groups_claim: "groups".into(),
                    policy_versions_table: Some(table(&self.name, "policy-versions")),
                    tool_policy_table: Some(table(&self.name, "tool-policy")),
                    // Sessions only: the emulator serves no OpenID provider;
                    // sign-in with a real one is tested under govctl serve.
                    signin: Some(SignInEnv {
                        client_id: "approver-pages".into(),
                        client_secret_id: None,
                        scopes: Vec::new(),
                        user_claim: "sub".into(),
                        public_url: format!("https://{}.approvals.test", self.name),
                        session_secret_id: format!("{}-session-key", self.name),
                        session_ttl_seconds: 3600,
                    }),
                },
                &self.sdk,
            )
            .await
            .expect("approval-callback handler"),
        };
        self.emu.register(&self.name, functions);
    }

    /// `govctl policy push DIR --env dev` against this stack; returns the version id.
    pub fn push(&self, policy: &Path, message: &str) -> String {
        let out = self.try_push(policy, message);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "govctl policy push failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("activated "))
            .expect("push prints the activated version")
            .trim()
            .to_owned()
    }

    /// `govctl policy push DIR --env dev` against this stack, as it ran.
    pub fn try_push(&self, policy: &Path, message: &str) -> std::process::Output {
        let policy = policy.to_str().expect("a UTF-8 path");
        self.govctl(&["policy", "push", policy, "-m", message, "--author", "ci"])
    }

    /// `govctl ARGS --env dev` against this stack (its name and the
    /// emulator's endpoint added), as it ran.
    pub fn govctl(&self, args: &[&str]) -> std::process::Output {
        Command::new(crate::common::govctl_bin())
            .args(args)
            .args([
                "--env",
                "dev",
                "--stack-name",
                &self.name,
                "--endpoint-url",
                &self.emu.url,
            ])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("GOVCTL_LOG", "warn")
            .output()
            .expect("run govctl")
    }

    /// A user token of the test issuer.
    pub fn user_token(&self, user: &str, roles: &[&str]) -> String {
        self.user_token_for(AUDIENCE, user, roles)
    }

    /// A user token of the test issuer, naming the user's organization.
    pub fn user_token_in(&self, user: &str, roles: &[&str], org: Option<&str>) -> String {
        self.mint_user(AUDIENCE, user, roles, org)
    }

    /// An approver token of the test issuer, for `groups`.
    pub fn approver_token(&self, approver: &str, groups: &[&str]) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.emu
            .keys
            .mint(&Claims {
                iss: ISSUER.into(),
                sub: approver.into(),
                aud: APPROVER_AUDIENCE.into(),
                exp: now + 600,
                iat: now,
                nbf: now,
                jti: format!("{approver}-{now}"),
                token_use: TokenUse::Approver,
                roles: Vec::new(),
                org: None,
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            })
            .expect("mint an approver token")
    }

    /// A user token of the test issuer for `audience`.
    pub fn user_token_for(&self, audience: &str, user: &str, roles: &[&str]) -> String {
        self.mint_user(audience, user, roles, None)
    }

    fn mint_user(&self, audience: &str, user: &str, roles: &[&str], org: Option<&str>) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.emu
            .keys
            .mint(&Claims {
                iss: ISSUER.into(),
                sub: user.into(),
                aud: audience.into(),
                exp: now + 600,
                iat: now,
                nbf: now,
                jti: format!("{user}-{now}"),
                token_use: TokenUse::User,
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                org: org.map(str::to_owned),
                groups: Vec::new(),
            })
            .expect("mint a user token")
    }

    /// Invokes one of this stack's functions through the router, as Lambda
    /// would: returns the status code and the payload or error.
    pub fn invoke(
        &self,
        function: &str,
        payload: &Value,
    ) -> (reqwest::StatusCode, Option<String>, Value) {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.emu.url,
            function_arn(&self.name, function)
        );
        let response = reqwest::blocking::Client::new()
            .post(url)
            .json(payload)
            .send()
            .expect("invoke");
        let status = response.status();
        let error = response
            .headers()
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, error, response.json().expect("a JSON payload"))
    }

    /// An API Gateway HTTP API request to `function`, as the IAM principal
    /// `principal_arn` (none: a route without IAM authorization).
    pub fn http(
        &self,
        function: &str,
        method: &str,
        path: &str,
        principal_arn: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> HttpAnswer {
        let mut event: Value = serde_json::from_str(include_str!("fixtures/http_api_request.json"))
            .expect("the fixture is JSON");
        event["rawPath"] = json!(path);
        event["routeKey"] = json!(format!("{method} {path}"));
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        event["body"] = json!(body);
        match principal_arn {
            Some(arn) => {
                event["requestContext"]["authorizer"]["iam"]["userArn"] = json!(arn);
            }
            None => {
                event["requestContext"]
                    .as_object_mut()
                    .expect("context")
                    .remove("authorizer");
            }
        }
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("cookie") {
                // HTTP API payload 2.0 carries cookies apart from the headers.
                event["cookies"] = json!(v.split("; ").collect::<Vec<_>>());
            } else {
                event["headers"][k.to_ascii_lowercase()] = json!(v);
            }
        }
        let (status, error, payload) = self.invoke(function, &event);
        assert_eq!(
            status,
            reqwest::StatusCode::OK,
            "invocation failed: {payload}"
        );
        assert_eq!(error, None, "the function failed: {payload}");
        let body = payload["body"].as_str().unwrap_or_default().to_owned();
        let cookies = payload["cookies"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let answer = HttpAnswer {
            status: payload["statusCode"].as_u64().expect("a status code"),
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            body,
            cookies,
            headers: payload["headers"].clone(),
        };
        // The deployment answers by the same contract as `govctl serve`.
        crate::common::openapi::check(
            &format!("{method} {path}"),
            u16::try_from(answer.status).expect("an HTTP status"),
            answer.headers["content-type"].as_str().unwrap_or(""),
            &answer.json,
        );
        answer
    }

    /// `POST /v1/authorize` as the agent running as IAM role `role`, for `user_token`.
    pub fn authorize(&self, role: &str, user_token: &str, body: &Value) -> HttpAnswer {
        let arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/session-1");
        self.http(
            "authorize",
            "POST",
            "/v1/authorize",
            Some(&arn),
            &[
                ("content-type", "application/json"),
                ("x-on-behalf-of", user_token),
            ],
            &body.to_string(),
        )
    }

    /// Feeds the decision table's new stream records to decision-log (all
    /// of them) and denial-metrics (those its event source mapping's filter
    /// in the template lets through), as Lambda's event source mappings do;
    /// returns how many decision records there were.
    pub fn pump_stream(&self) -> usize {
        let records = self.emu.block_on(self.read_stream());
        if records.is_empty() {
            return 0;
        }
        let pattern = denial_metrics_filter();
        let denials: Vec<Value> = records
            .iter()
            .filter(|r| filter_matches(&pattern, r))
            .cloned()
            .collect();
        for (function, batch) in [
            ("decision-log", records.clone()),
            ("denial-metrics", denials),
        ] {
            if batch.is_empty() {
                continue;
            }
            let (status, error, payload) = self.invoke(function, &json!({ "Records": batch }));
            assert!(
                status.is_success() && error.is_none(),
                "{function} failed: {payload}"
            );
        }
        // Control-plane events (from `govctl policy push`) ride the same
        // stream; the count is of decision records.
        records
            .iter()
            .filter(|r| r["dynamodb"]["NewImage"]["kind"]["S"] != "control")
            .count()
    }

    /// The decision table's new stream records, undelivered.
    pub fn stream_batch(&self) -> Vec<Value> {
        self.emu.block_on(self.read_stream())
    }

    /// Delivers `records` to decision-log as one stream batch; its answer.
    pub fn deliver_to_decision_log(&self, records: &[Value]) -> Value {
        let (status, error, payload) = self.invoke("decision-log", &json!({ "Records": records }));
        assert!(
            status.is_success() && error.is_none(),
            "decision-log failed: {payload}"
        );
        payload
    }

    /// Copies the evidence bucket's current objects into `dir` (as `aws s3
    /// sync` does), one file per key.
    pub fn copy_evidence(&self, dir: &Path) -> Vec<String> {
        let s3 = &self.clients.s3;
        let bucket = self.evidence_bucket();
        let objects = self
            .emu
            .block_on(s3.list_objects_v2().bucket(&bucket).send())
            .expect("list evidence");
        let mut keys = Vec::new();
        for key in objects
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.key)
        {
            let object = self
                .emu
                .block_on(s3.get_object().bucket(&bucket).key(&key).send())
                .expect("get evidence");
            let body = self
                .emu
                .block_on(object.body.collect())
                .expect("body")
                .into_bytes();
            let path = dir.join(&key);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, &body).expect("write the copy");
            keys.push(key);
        }
        keys
    }

    /// `govctl audit verify --file DIR --public-key … ARGS`, against this
    /// stack's emulator; exit code and standard output.
    pub fn verify_copy(&self, dir: &Path, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(crate::common::govctl_bin())
            .args(["audit", "verify", "--file"])
            .arg(dir)
            .args(["--public-key", &self.audit_public_key()])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &self.emu.url)
            .env("GOVCTL_LOG", "warn")
            .output()
            .expect("run govctl");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    async fn read_stream(&self) -> Vec<Value> {
        use aws_sdk_dynamodbstreams::types::{AttributeValue, ShardIteratorType};
        let mut iterators = self.shard_iterators.lock().expect("lock").clone();
        if iterators.is_empty() {
            let table = self
                .clients
                .dynamodb
                .describe_table()
                .table_name(table(&self.name, "decisions"))
                .send()
                .await
                .expect("describe table");
            let stream_arn = table
                .table
                .and_then(|t| t.latest_stream_arn)
                .expect("the decisions table has a stream");
            let stream = self
                .clients
                .streams
                .describe_stream()
                .stream_arn(&stream_arn)
                .send()
                .await
                .expect("describe stream");
            for shard in stream
                .stream_description
                .and_then(|d| d.shards)
                .unwrap_or_default()
            {
                let it = self
                    .clients
                    .streams
                    .get_shard_iterator()
                    .stream_arn(&stream_arn)
                    .shard_id(shard.shard_id.unwrap_or_default())
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("shard iterator");
                iterators.extend(it.shard_iterator);
            }
        }
        let mut records = Vec::new();
        let mut next = Vec::new();
        for it in iterators {
            let out = self
                .clients
                .streams
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("get records");
            for r in out.records.unwrap_or_default() {
                let Some(change) = r.dynamodb else { continue };
                let image: serde_json::Map<String, Value> = change
                    .new_image
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let v = match v {
                            AttributeValue::S(s) => json!({ "S": s }),
                            AttributeValue::N(n) => json!({ "N": n }),
                            AttributeValue::Bool(b) => json!({ "BOOL": b }),
                            _ => return None,
                        };
                        Some((k, v))
                    })
                    .collect();
                records.push(json!({
                    "eventID": r.event_id,
                    "eventName": r.event_name.map(|e| e.as_str().to_owned()),
                    "eventSource": "aws:dynamodb",
                    "awsRegion": REGION,
                    "dynamodb": { "NewImage": image, "StreamViewType": "NEW_IMAGE" },
                }));
            }
            next.extend(out.next_shard_iterator);
        }
        *self.shard_iterators.lock().expect("lock") = next;
        records
    }

    /// The status of the approval's execution, once it has left RUNNING.
    pub fn wait_for_execution(
        &self,
        approval_id: &str,
        timeout: Duration,
    ) -> (String, Option<String>) {
        let arn = format!(
            "arn:aws:states:{REGION}:{ACCOUNT}:execution:{}-approval:{approval_id}",
            self.name
        );
        let deadline = Instant::now() + timeout;
        loop {
            let out = self
                .emu
                .block_on(
                    self.clients
                        .sfn
                        .describe_execution()
                        .execution_arn(&arn)
                        .send(),
                )
                .expect("describe execution");
            let status = out.status.as_str().to_owned();
            if status != "RUNNING" {
                return (status, out.error);
            }
            assert!(
                Instant::now() < deadline,
                "execution {approval_id} still RUNNING after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The first SNS notification to this stack's approvers, once delivered.
    pub fn wait_for_notification(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.emu.sns_messages(&self.name).into_iter().next() {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no notification to {}'s approvers after {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every record of the decision table (decisions and control events),
    /// read page by page.
    pub fn decision_items(&self) -> Vec<Value> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .emu
                .block_on(
                    self.clients
                        .dynamodb
                        .scan()
                        .table_name(table(&self.name, "decisions"))
                        .set_exclusive_start_key(start)
                        .send(),
                )
                .expect("scan decisions");
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        items
            .into_iter()
            .filter(|i| {
                i.get("kind")
                    .and_then(|k| k.as_s().ok())
                    .is_some_and(|k| k != "idempotency")
            })
            .map(|i| {
                serde_json::from_str(i["record"].as_s().expect("record")).expect("record JSON")
            })
            .collect()
    }

    /// The Sum of a metric with the given dimensions over the last hour.
    pub fn metric_sum(&self, name: &str, dimensions: &[(&str, &str)]) -> f64 {
        use aws_sdk_cloudwatch::types::{Dimension, Statistic};
        let now = std::time::SystemTime::now();
        let out = self
            .emu
            .block_on(
                self.clients
                    .cloudwatch
                    .get_metric_statistics()
                    .namespace(self.metrics_namespace())
                    .metric_name(name)
                    .set_dimensions(Some(
                        dimensions
                            .iter()
                            .map(|(k, v)| Dimension::builder().name(*k).value(*v).build())
                            .collect(),
                    ))
                    .start_time((now - Duration::from_secs(3600)).into())
                    .end_time((now + Duration::from_secs(60)).into())
                    .period(3600)
                    .statistics(Statistic::Sum)
                    .send(),
            )
            .expect("get metric statistics");
        out.datapoints
            .unwrap_or_default()
            .iter()
            .filter_map(|d| d.sum)
            .sum()
    }
}

/// An HTTP answer of a function.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status.
    pub status: u64,
    /// The body.
    pub body: String,
    /// The body as JSON, or null.
    pub json: Value,
    /// The cookies it sets.
    pub cookies: Vec<String>,
    /// The headers it sets.
    pub headers: Value,
}

/// The `FilterCriteria` pattern of denial-metrics' stream event in the template.
fn denial_metrics_filter() -> Value {
    let template = std::fs::read_to_string(workspace_root().join("infra/template.yaml"))
        .expect("infra/template.yaml");
    let line = template
        .lines()
        .find(|l| l.trim_start().starts_with("- Pattern: '"))
        .expect("the template filters the denial-metrics stream");
    let json = line
        .trim()
        .trim_start_matches("- Pattern: '")
        .trim_end_matches('\'');
    serde_json::from_str(json).expect("the filter pattern is JSON")
}

/// Whether a stream record matches an event filter pattern: every key of
/// the pattern must match, a list by containing the record's value.
fn filter_matches(pattern: &Value, record: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields
            .iter()
            .all(|(k, p)| record.get(k).is_some_and(|r| filter_matches(p, r))),
        Value::Array(allowed) => allowed.contains(record),
        other => other == record,
    }
}
