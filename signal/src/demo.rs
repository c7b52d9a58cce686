//! The demo page: two browsers in one call, connected by perfect negotiation over this
//! service (`signal/web/`, plain HTML and JavaScript, no build step, nothing from a CDN).

use axum::http::header;
use axum::response::IntoResponse;

/// `GET /`: the page.
pub async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../web/index.html"),
    )
}

/// `GET /app.js`: the page's client.
pub async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../web/app.js"),
    )
}

/// `GET /client.json`: the client's state table (`icepact::room::table_json`), which the page
/// checks each of its state changes against.
pub async fn table() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        icepact::room::table_json(),
    )
}
