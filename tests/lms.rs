//! The LMS provider end to end: the `aspects` binary against the stack's LMS database (the
//! schema of the real upstream migrations), and every row it writes read back through the real
//! Django models of fixtures/lms, as the LMS itself would read it.

use aspects_e2e::{Run, Sandbox, block_on, django, lms_admin, lms_db_url};
use sqlx::AssertSqlSafe;

/// The fixture's FERNET_KEYS[0] (fixtures/lms/lms_fixture/settings.py): what the LMS decrypts with.
const FERNET_KEY: &str = "aspects-lms-schema-fixture-fernet-key";
const USER_PW: &str = "Lms-user-Pw-1";
const CLIENT_SECRET: &str = "client-Secret-1";
const LRS_PW: &str = "lrs-Pw-1";

const PLAN: &str = r#"
[lms_user.superset]
username = "@@superset"
email = "superset@apache"
password = "${secrets.user_pw}"
is_staff = true
name = "Superset service"

[lms_user.aspects]
username = "@@aspects"
email = "aspects@axim"

[lms_oauth_application.sso]
name = "@@superset-sso"
user = "${lms_user.superset.username}"
client_id = "@@client"
client_secret = "${secrets.client_secret}"
redirect_uris = ["http://superset.local/oauth-authorized/openedxsso"]
scopes = ["user_id"]

[lms_router_configuration.ralph]
route_url = "http://ralph:8100/xAPI/@@"
username = "ralph_lms"
password = "${secrets.lrs_pw}"
changed_by = "${lms_user.aspects.username}"

[lms_waffle_flag.sink]
name = "@@event_sink_clickhouse.enabled"
everyone = true
note = "Aspects"
"#;

/// A sandbox whose LMS rows and ownership records go when it does.
struct Lms(Sandbox);

impl std::ops::Deref for Lms {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.0
    }
}

impl Drop for Lms {
    fn drop(&mut self) {
        let prefix = self.0.prefix.clone();
        let _ = std::thread::spawn(move || clean(&prefix)).join();
    }
}

/// Deletes every LMS row and ownership record a sandbox made.
fn clean(prefix: &str) {
    let p = format!("{prefix}%");
    block_on(async {
        let pool = lms_admin().await;
        let apps = "(SELECT id FROM oauth2_provider_application WHERE name LIKE ?)";
        for sql in [
            format!("DELETE FROM oauth_dispatch_applicationaccess WHERE application_id IN {apps}"),
            "DELETE FROM oauth2_provider_application WHERE name LIKE ?".into(),
            "DELETE FROM event_routing_backends_routerconfiguration WHERE route_url LIKE CONCAT('%', ?)".into(),
            "DELETE p FROM auth_userprofile p JOIN auth_user u ON u.id = p.user_id WHERE u.username LIKE ?".into(),
            "DELETE FROM auth_user WHERE username LIKE ?".into(),
            "DELETE FROM waffle_flag WHERE name LIKE ?".into(),
            "DELETE FROM aspects_lms_meta.owned WHERE deployment LIKE ?".into(),
        ] {
            let _ = sqlx::query(AssertSqlSafe(sql)).bind(&p).execute(&pool).await;
        }
    })
}

fn lms(name: &str, body: &str) -> Lms {
    let mut s = Sandbox::new(name);
    for (k, v) in [("FERNET", FERNET_KEY), ("USER_PW", USER_PW), ("CLIENT_SECRET", CLIENT_SECRET), ("LRS_PW", LRS_PW)] {
        s.set_env(k, v);
    }
    let s = Lms(s);
    write_plan(&s, body);
    s
}

fn write_plan(s: &Sandbox, body: &str) {
    s.write(
        "aspects.toml",
        &format!(
            "[deployment]\nname = \"{p}dep\"\n\n[secrets]\nfernet = {{ env = \"FERNET\" }}\n\
             user_pw = {{ env = \"USER_PW\" }}\nclient_secret = {{ env = \"CLIENT_SECRET\" }}\n\
             lrs_pw = {{ env = \"LRS_PW\" }}\n\n[providers.lms]\nurl = \"{url}\"\nfernet_key = \"${{secrets.fernet}}\"\n{}",
            body.replace("@@", &s.prefix),
            p = s.prefix,
            url = lms_db_url()
        ),
    );
}

fn apply(s: &Sandbox) -> Run {
    let r = s.run(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{r:?}");
    r
}

fn assert_no_changes(s: &Sandbox) {
    let r = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "a plan after apply must be empty: {r:?}");
}

/// Secrets, the Fernet key, and the forms they are stored in never appear in any output.
fn assert_no_secrets(s: &Sandbox, outputs: &[&Run]) {
    let mut text: String = outputs.iter().map(|r| r.all()).collect();
    text.push_str(&aspects_e2e::read_tree(&s.dir).replace(&s.secrets_file(), ""));
    for secret in [FERNET_KEY, USER_PW, CLIENT_SECRET, LRS_PW, "pbkdf2_sha256$", "gAAAAA"] {
        assert!(!text.contains(secret), "{secret:?} leaked: {text}");
    }
}

/// What the LMS's own models make of the sandbox's rows.
fn read_back(s: &Sandbox) -> serde_json::Value {
    django(
        r#"
import json, os
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from oauth2_provider.models import get_application_model
from event_routing_backends.models import RouterConfiguration
from waffle import get_waffle_flag_model
p = os.environ["P"]
user = User.objects.get(username=p + "superset")
service = User.objects.get(username=p + "aspects")
app = get_application_model().objects.get(name=p + "superset-sso")
route = RouterConfiguration.current(f"http://ralph:8100/xAPI/{p}")
flag = get_waffle_flag_model().objects.get(name=p + "event_sink_clickhouse.enabled")
print(json.dumps({
    "authenticates": authenticate(username=p + "superset", password=os.environ["USER_PW"]) is not None,
    "wrong_password": authenticate(username=p + "superset", password="nope") is not None,
    "is_staff": user.is_staff,
    "is_superuser": user.is_superuser,
    "profile": [user.profile.name, user.profile.courseware],
    "service_usable_password": service.has_usable_password(),
    "service_profile": service.profile.courseware,
    "app": {
        "client_id_matches": app.client_id == p + "client",
        "secret_matches": app.client_secret == os.environ["CLIENT_SECRET"],
        "owner_matches": app.user_id == user.id,
        "redirect_allowed": app.redirect_uri_allowed("http://superset.local/oauth-authorized/openedxsso"),
        "other_redirect_allowed": app.redirect_uri_allowed("http://evil.example/"),
        "grant": app.authorization_grant_type,
        "client_type": app.client_type,
        "scopes": app.access.scopes,
    },
    "route": {
        "enabled": route.enabled,
        "backend": route.backend_name,
        "scheme": route.auth_scheme,
        "username": route.username,
        "password_matches": route.password == os.environ["LRS_PW"],
        "configurations": route.configurations,
        "changed_by_matches": route.changed_by_id == service.id,
        "routers_enabled": [r.route_url == f"http://ralph:8100/xAPI/{p}" for r in RouterConfiguration.get_enabled_routers("xAPI") if p in r.route_url],
    },
    "flag": {"everyone": flag.everyone, "note": flag.note, "active": flag.is_active_for_user(service)},
}))
"#,
        &[("P", &s.prefix), ("USER_PW", USER_PW), ("CLIENT_SECRET", CLIENT_SECRET), ("LRS_PW", LRS_PW)],
    )
}

#[test]
fn every_kind_applies_plans_empty_and_the_lms_models_accept_the_rows() {
    let s = lms("lms-kinds", PLAN);
    let plan = s.run(&["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    insta::assert_snapshot!("first_plan", s.scrub(&plan.stdout));
    let applied = apply(&s);
    assert_no_changes(&s);
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 0, "{drift:?}");
    insta::assert_json_snapshot!("read_by_django", read_back(&s));
    assert_no_secrets(&s, &[&plan, &applied, &drift]);
}

/// Runs SQL on the LMS database, as someone editing rows by hand would.
fn by_hand(s: &Sandbox, statements: &[&str]) {
    block_on(async {
        let pool = lms_admin().await;
        for sql in statements {
            sqlx::query(AssertSqlSafe(sql.replace("@@", &s.prefix))).execute(&pool).await.unwrap();
        }
    });
}

#[test]
fn rows_changed_by_hand_are_drift_and_apply_restores_them() {
    let s = lms("lms-drift", PLAN);
    apply(&s);
    by_hand(
        &s,
        &[
            "UPDATE oauth2_provider_application SET redirect_uris = 'http://evil.example/cb', client_secret = 'x' \
             WHERE name = '@@superset-sso'",
            "UPDATE auth_user SET is_staff = 0, password = '!unusable' WHERE username = '@@superset'",
            "UPDATE waffle_flag SET everyone = 0 WHERE name = '@@event_sink_clickhouse.enabled'",
            "INSERT INTO event_routing_backends_routerconfiguration (change_date, changed_by_id, enabled, backend_name, \
             route_url, auth_scheme, auth_key, username, password, configurations) SELECT UTC_TIMESTAMP(6), \
             changed_by_id, 0, backend_name, route_url, auth_scheme, auth_key, username, password, configurations \
             FROM event_routing_backends_routerconfiguration WHERE route_url = 'http://ralph:8100/xAPI/@@'",
        ],
    );
    let drift = s.run(&["drift"]);
    assert_eq!(drift.code, 2, "{drift:?}");
    insta::assert_snapshot!("drift", s.scrub(&drift.stdout));
    let applied = apply(&s);
    assert_no_changes(&s);
    insta::assert_json_snapshot!("read_by_django", read_back(&s));
    assert_no_secrets(&s, &[&drift, &applied]);
}

#[test]
fn hostile_input_is_refused_at_its_place_before_anything_is_read() {
    let s = lms(
        "lms-hostile",
        r#"
[lms_user.bad]
username = "robert'); DROP TABLE auth_user;--"
email = "not-an-email"

[lms_oauth_application.bad]
name = "app"
user = "x"
client_id = "has space"
client_secret = "${secrets.client_secret}"
redirect_uris = ["javascript:alert(1)"]
client_type = "secret"

[lms_router_configuration.bad]
route_url = "http://ralph:8100/xAPI/"
auth_scheme = "Bearer"

[lms_waffle_flag.bad]
name = "f"
percent = "150"
"#,
    );
    let r = s.run(&["plan"]);
    assert_eq!(r.code, 1, "{r:?}");
    insta::assert_snapshot!("hostile", s.scrub(&r.stderr));
    assert_no_secrets(&s, &[&r]);
}

#[test]
fn an_apply_killed_after_any_write_converges() {
    let s = lms("lms-crash", PLAN);
    let writes = aspects_e2e::crash_at_every_write(&s, &["apply", "--auto-approve", "--parallelism", "1"], |k, _| {
        let r = s.run(&["apply", "--auto-approve"]);
        assert_eq!(r.code, 0, "k = {k}: the apply after the crash must converge: {r:?}");
        assert_no_changes(&s);
        // Start over from nothing for the next crash point.
        clean(&s.prefix);
    });
    assert!(writes >= 10, "the plan has only {writes} writes");
    apply(&s);
    insta::assert_json_snapshot!("read_by_django", read_back(&s));
}

/// Many users and flags created at once: each insert reads its table for the name first, and two
/// such inserts into one table can deadlock on its AUTO-INC lock (MariaDB then fails one with
/// error 1467). The loser is retried, so the apply succeeds however the inserts interleave.
#[test]
fn rows_created_concurrently_all_land() {
    let body: String = (0..16)
        .map(|i| {
            format!(
                "[lms_user.u{i}]\nusername = \"@@u{i}\"\nemail = \"u{i}@example.org\"\n\n\
                 [lms_waffle_flag.f{i}]\nname = \"@@f{i}\"\neveryone = true\n\n"
            )
        })
        .collect();
    let s = lms("lms-concurrent", &body);
    // The deadlock needs an unlucky interleaving (about one apply in 25 here): try a few.
    for round in 0..4 {
        let r = s.run(&["apply", "--auto-approve", "--parallelism", "16"]);
        assert_eq!(r.code, 0, "round {round}: {r:?}");
        assert!(r.stdout.contains("Apply complete! 32 done, 0 failed"), "round {round}: {r:?}");
        assert_no_changes(&s);
        clean(&s.prefix);
    }
}
