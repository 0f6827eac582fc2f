//! The pages of the web desk. Each handler calls refnet with the session's
//! token and renders the reply; a failed call is shown as the server's code
//! and message, field violations beside their inputs.

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use maud::{DOCTYPE, Markup, html};
use tonic::metadata::{Ascii, MetadataValue};

use super::{
    Web,
    session::{self, COOKIE, Session},
    text::{Lang, t},
};
use crate::{Bearer, Desk, output};

type WebState = State<Arc<Web>>;

/// The login form's CSRF cookie (before there is a session).
const LOGIN_COOKIE: &str = "refnet_login";
/// The language cookie.
const LANG_COOKIE: &str = "refnet_lang";

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn lang(headers: &HeaderMap) -> Lang {
    cookie(headers, LANG_COOKIE).map_or(Lang::En, |v| Lang::parse(&v))
}

/// A cookie the page's script cannot read, sent only over a secure context
/// and only with requests from this desk's own pages.
fn set_cookie(name: &str, value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("refnet_invalid=1"))
}

pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The page around `body`: navigation for a signed-in officer, the title.
pub(crate) fn page(lang: Lang, title: &str, who: Option<&Session>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang=(lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · " (t(lang, "app")) }
                    link rel="stylesheet" href="/static/desk.css";
                    script src="/static/desk.js" defer {}
                }
                body {
                    header {
                        nav {
                            strong { (t(lang, "app")) }
                            @if who.is_some() {
                                a href="/inbox" { (t(lang, "nav.inbox")) }
                                a href="/referrals/new" { (t(lang, "nav.file")) }
                            }
                            a href=(if lang == Lang::Sw { "/lang/en" } else { "/lang/sw" }) { (t(lang, "nav.language")) }
                            @if let Some(s) = who {
                                span.who { (t(lang, "signed_in_as")) " " (s.officer.officer) ", " (s.officer.agency) " (" (s.officer.roles.join(", ")) ")" }
                                form method="post" action="/sign-out" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button type="submit" { (t(lang, "nav.sign_out")) }
                                }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

pub(crate) fn error_page(
    lang: Lang,
    who: Option<&Session>,
    status: StatusCode,
    text: &str,
) -> Response {
    (
        status,
        page(
            lang,
            t(lang, "error.title"),
            who,
            html! { p.error role="alert" { (text) } },
        ),
    )
        .into_response()
}

/// The session of this request and a desk client with its token; `None`
/// when signed out (see [`to_sign_in`]).
pub(crate) fn signed_in(web: &Web, headers: &HeaderMap) -> Option<(Session, Desk)> {
    let id = cookie(headers, COOKIE)?;
    let (session, token) = web.sessions.get(&id)?;
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}").parse().ok()?;
    value.set_sensitive(true);
    let desk = Desk {
        channel: web.channel.clone(),
        bearer: Bearer(value),
        server: String::new(),
        json: false,
    };
    Some((session, desk))
}

/// A form post of a signed-in officer carrying the session's CSRF token;
/// else the answer to give (the sign-in page, or a refusal).
pub(crate) fn posted(
    web: &Web,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(Session, Desk), Box<Response>> {
    let Some((session, desk)) = signed_in(web, headers) else {
        return Err(Box::new(to_sign_in()));
    };
    if !session::same(&session.csrf, field(pairs, "csrf")) {
        let lang = lang(headers);
        let refused = error_page(
            lang,
            Some(&session),
            StatusCode::FORBIDDEN,
            t(lang, "error.csrf"),
        );
        return Err(Box::new(refused));
    }
    Ok((session, desk))
}

/// The way to the sign-in page.
pub(crate) fn to_sign_in() -> Response {
    Redirect::to("/sign-in").into_response()
}

pub(crate) fn failed(lang: Lang, who: &Session, status: &tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::InvalidArgument => StatusCode::UNPROCESSABLE_ENTITY,
        tonic::Code::FailedPrecondition | tonic::Code::Aborted | tonic::Code::AlreadyExists => {
            StatusCode::CONFLICT
        }
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::BAD_GATEWAY,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_page(lang, Some(who), code, &output::status_text(status))
}

/// After a change: back to `to` (303), or the server's refusal.
pub(crate) fn then_back<T>(
    lang: Lang,
    who: &Session,
    answered: Result<T, tonic::Status>,
    to: &str,
) -> Response {
    match answered {
        Ok(_) => Redirect::to(to).into_response(),
        Err(status) => failed(lang, who, &status),
    }
}

/// `/`: the inbox, or the sign-in page.
pub(crate) async fn home(State(web): WebState, headers: HeaderMap) -> Response {
    match signed_in(&web, &headers) {
        Some(_) => Redirect::to("/inbox").into_response(),
        None => to_sign_in(),
    }
}

/// `/sign-in`: the development sign-in when offered.
pub(crate) async fn sign_in(State(web): WebState, headers: HeaderMap) -> Response {
    let lang = lang(&headers);
    let csrf = session::random();
    let body = match &web.dev {
        Some(dev) => html! {
            p { (t(lang, "sign_in.dev")) }
            form method="post" action="/sign-in/dev" {
                input type="hidden" name="csrf" value=(csrf);
                label.field {
                    span { (t(lang, "sign_in.agency")) }
                    select name="agency" {
                        @for a in dev.agencies() {
                            option value=(a.id) { (a.name) " (" (a.id) ")" }
                        }
                    }
                }
                fieldset.choices {
                    legend { (t(lang, "sign_in.roles")) }
                    @for role in dev.roles() {
                        label.choice {
                            input type="checkbox" name="role" value=(role) checked[role == "officer"];
                            " " (role)
                        }
                    }
                }
                button type="submit" { (t(lang, "sign_in.submit")) }
            }
        },
        None => html! { p { (t(lang, "sign_in.none")) } },
    };
    let mut response = page(lang, t(lang, "sign_in.title"), None, body).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &csrf, 600));
    response
}

/// `POST /sign-in/dev`: a development token for the chosen agency and roles.
pub(crate) async fn sign_in_dev(
    State(web): WebState,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let lang = lang(&headers);
    let Some(dev) = &web.dev else {
        return not_found().await;
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(&expected, field(&pairs, "csrf")) {
        return error_page(lang, None, StatusCode::FORBIDDEN, t(lang, "error.csrf"));
    }
    let roles: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "role")
        .map(|(_, v)| v.clone())
        .collect();
    let opened = dev
        .mint(field(&pairs, "agency"), &roles)
        .and_then(|token| web.sessions.open(&token));
    match opened {
        Ok(id) => {
            let mut response = Redirect::to("/inbox").into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, set_cookie(COOKIE, &id, 12 * 3600));
            headers.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0));
            response
        }
        Err(e) => error_page(lang, None, StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `POST /sign-out`.
pub(crate) async fn sign_out(
    State(web): WebState,
    headers: HeaderMap,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let (_session, _) = match posted(&web, &headers, &pairs) {
        Ok(s) => s,
        Err(answer) => return *answer,
    };
    if let Some(id) = cookie(&headers, COOKIE) {
        web.sessions.close(&id);
    }
    let mut response = Redirect::to("/sign-in").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(COOKIE, "", 0));
    response
}

/// `/lang/{code}`: the desk in that language from now on.
pub(crate) async fn language(Path(code): Path<String>) -> Response {
    let lang = Lang::parse(&code);
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LANG_COOKIE, lang.code(), 365 * 24 * 3600),
    );
    response
}

/// An enum value name in words (`OUT_OF_CONSENT` -> `out of consent`).
pub(crate) fn words(name: &str) -> String {
    name.replace('_', " ").to_ascii_lowercase()
}

/// Anything else.
pub(crate) async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// The desk's stylesheet.
pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/desk.css"),
    )
        .into_response()
}

/// The desk's script (progressive enhancement only).
pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/desk.js"),
    )
        .into_response()
}
