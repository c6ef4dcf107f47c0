//! Test plugin `guarded`: `GET /whoami`, guarded by the plugin `flaky-auth` (a declared
//! dependency) with a 500 ms time limit, answers the identity it received; `GET /challenge`
//! (public) answers its own 401 with a `WWW-Authenticate` header and a problem+json body, which
//! the host must pass on as written.
#![forbid(unsafe_code)]

use plugin_api::http::{Auth, HttpRequest, HttpResponse, Route};
use plugin_api::{Context, Function, Functions, Manifest, Plugin, Result};

/// The plugin (no state).
#[derive(Debug)]
pub struct Guarded;

impl Plugin for Guarded {
    const MANIFEST: Manifest = Manifest::new("guarded", env!("CARGO_PKG_VERSION"))
        .description("a route guarded by the flaky-auth plugin")
        .depends_on(&[("flaky-auth", "^1")])
        .functions(&[
            Function::new("whoami").summary("the caller's identity"),
            Function::new("challenge").summary("a 401 of the plugin's own"),
        ])
        .routes(&[
            Route::get("/whoami", "whoami")
                .summary("the caller's identity")
                .auth(Auth::Plugin("flaky-auth"))
                .timeout_ms(500),
            Route::get("/challenge", "challenge").summary("a 401 of the plugin's own"),
        ]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("whoami", Self::whoami)
            .add_shared("challenge", Self::challenge);
    }
}

impl Guarded {
    fn whoami(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        HttpResponse::ok(&req.identity)
    }

    fn challenge(&self, _: &Context, _: HttpRequest) -> Result<HttpResponse> {
        let problem = plugin_api::serde_json::json!({ "title": "sign in first", "status": 401 });
        Ok(HttpResponse::json(401, &problem)?
            .header("content-type", "application/problem+json")
            .header("www-authenticate", "Bearer realm=\"guarded\""))
    }
}

plugin_api::export_plugin!(Guarded);
