//! The stack's Superset is the real one and answers the REST API the way the Superset provider
//! will use it: a database login, then a CSRF token that works only with its session cookie.

use aspects_e2e::block_on;
use aspects_e2e::superset::stack as superset;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn login(client: &Client, url: &str, user: &str, password: &str) -> (StatusCode, Value) {
    let response = client
        .post(format!("{url}/api/v1/security/login"))
        .header("Accept", "application/json")
        .json(&json!({"username": user, "password": password, "provider": "db", "refresh": true}))
        .send()
        .await
        .expect("Superset answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[test]
fn login_then_csrf_token_with_its_session_cookie() {
    let Some((url, user, password)) = superset() else { return };
    block_on(async {
        // The cookie jar keeps the `session` cookie the CSRF token is bound to.
        let client = Client::builder().cookie_store(true).build().unwrap();

        let (status, body) = login(&client, &url, &user, "not-the-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

        let (status, body) = login(&client, &url, &user, &password).await;
        assert_eq!(status, StatusCode::OK, "login: {body}");
        let token = body["access_token"].as_str().expect("an access token").to_owned();
        assert_eq!(token.split('.').count(), 3, "a JWT");
        assert!(body["refresh_token"].is_string(), "a refresh token (refresh: true)");

        let response = client
            .get(format!("{url}/api/v1/security/csrf_token/"))
            .header("Accept", "application/json")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.cookies().any(|c| c.name() == "session"), "the CSRF token comes with its session cookie");
        let body: Value = response.json().await.unwrap();
        let csrf = body["result"].as_str().filter(|t| !t.is_empty()).expect("a CSRF token").to_owned();

        // A write proves the pair: refused without the token, accepted with token and cookie. A
        // dashboard, as Superset's own APIs check CSRF (6.1.0's FAB security API, roles and users,
        // does not).
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let title = format!("aspects-e2e-{}-{nanos}", std::process::id());
        let create = |with_token: bool| {
            let mut request = client
                .post(format!("{url}/api/v1/dashboard/"))
                .header("Accept", "application/json")
                .bearer_auth(&token)
                .json(&json!({"dashboard_title": title}));
            if with_token {
                request = request.header("X-CSRFToken", &csrf);
            }
            request.send()
        };
        let refused = create(false).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(refused.text().await.unwrap().contains("CSRF token is missing"));
        let created = create(true).await.unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let id = created.json::<Value>().await.unwrap()["id"].as_i64().expect("the new dashboard's id");

        let deleted = client
            .delete(format!("{url}/api/v1/dashboard/{id}"))
            .header("Accept", "application/json")
            .header("X-CSRFToken", &csrf)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), StatusCode::OK, "{}", deleted.text().await.unwrap());
    });
}
