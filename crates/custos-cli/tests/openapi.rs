//! `GET /openapi.json` from the real binary: served without a key, as JSON, OpenAPI 3.1, and
//! the very document the server library generates. (`scripts/schemathesis` then checks the
//! server against it.)

mod support;

use serde_json::Value;
use support::*;

#[test]
fn the_server_serves_its_openapi_document() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    ok(&custos(&data, &["init"]));
    let mut server = start(&data);

    let r = http(&server.addr, "GET", "/openapi.json", None, None);
    assert_eq!(r.status, 200, "{}", r.show());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "custos");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["apiKey"]["scheme"],
        "bearer"
    );
    let library: Value =
        serde_json::to_value(custos_server::openapi::document()).expect("the document serialises");
    assert_eq!(doc, library);

    // A key is not needed, and a wrong one does not matter.
    let r = http(
        &server.addr,
        "GET",
        "/openapi.json",
        Some("ck_nope_nope"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.show());

    assert!(server.terminate().success());
}
