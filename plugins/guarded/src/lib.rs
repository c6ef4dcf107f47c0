//! Test plugin `guarded`: one route, `GET /whoami`, guarded by the plugin `flaky-auth`
//! (a declared dependency) with a 500 ms time limit; it answers the identity it received.
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
        .functions(&[Function::new("whoami").summary("the caller's identity")])
        .routes(&[Route::get("/whoami", "whoami")
            .summary("the caller's identity")
            .auth(Auth::Plugin("flaky-auth"))
            .timeout_ms(500)]);

    fn new(_ctx: &Context) -> Result<Self> {
        Ok(Self)
    }

    fn functions(f: &mut Functions<Self>) {
        f.add_shared("whoami", Self::whoami);
    }
}

impl Guarded {
    fn whoami(&self, _: &Context, req: HttpRequest) -> Result<HttpResponse> {
        HttpResponse::ok(&req.identity)
    }
}

plugin_api::export_plugin!(Guarded);
