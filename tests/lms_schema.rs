//! The stack's LMS database is the real one: the tables Aspects writes exist exactly as the
//! upstream migrations create them, and rows written with plain SQL (as the LMS provider will)
//! are read back by the real Django models.

use aspects_e2e::{block_on, django, lms_admin};
use sqlx::{AssertSqlSafe, MySqlPool};

/// The LMS tables Aspects writes; the last two are edx-platform's, built from mirrors of its
/// models (fixtures/lms/edx_platform_models).
const TABLES: &[&str] = &[
    "auth_user",
    "oauth2_provider_application",
    "waffle_flag",
    "event_routing_backends_routerconfiguration",
    "auth_userprofile",
    "oauth_dispatch_applicationaccess",
];

#[test]
fn lms_tables_are_the_upstream_schema() {
    let ddl = block_on(async {
        let pool = lms_admin().await;
        let mut out = String::new();
        for table in TABLES {
            // Constant names from TABLES, not input.
            let (_, create): (String, String) = sqlx::query_as(AssertSqlSafe(format!("SHOW CREATE TABLE `{table}`")))
                .fetch_one(&pool)
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            let create: String =
                create.split(' ').filter(|w| !w.starts_with("AUTO_INCREMENT=")).collect::<Vec<_>>().join(" ");
            out.push_str(&create);
            out.push_str("\n\n");
        }
        out
    });
    // Identical to the dump taken after `manage.py migrate` in the feasibility study
    // (shared reference notes/lms-schema.sql), appendix tables included.
    insta::assert_snapshot!("lms_schema", ddl);
}

/// A name no other test run uses, and the rows it owns, deleted again at the end.
struct Rows {
    name: String,
}

async fn delete_rows(pool: &MySqlPool, n: &str) {
    let flag = format!("{n}.flag");
    for (sql, key) in [
        (
            "DELETE a FROM oauth_dispatch_applicationaccess a JOIN oauth2_provider_application p ON p.id = a.application_id WHERE p.client_id = ?",
            n,
        ),
        ("DELETE FROM oauth2_provider_application WHERE client_id = ?", n),
        ("DELETE p FROM auth_userprofile p JOIN auth_user u ON u.id = p.user_id WHERE u.username = ?", n),
        ("DELETE FROM auth_user WHERE username = ?", n),
        ("DELETE FROM waffle_flag WHERE name = ?", &flag),
    ] {
        sqlx::query(sql).bind(key).execute(pool).await.unwrap();
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || block_on(async { delete_rows(&lms_admin().await, &name).await })).join();
    }
}

#[test]
fn rows_written_with_sql_are_read_by_the_real_models() {
    let rows = Rows { name: format!("t{}_lms", std::process::id()) };
    let n = rows.name.as_str();
    block_on(async {
        let pool = lms_admin().await;
        delete_rows(&pool, n).await;
        // What edx-platform's manage_user and create_dot_application write, as plain SQL.
        sqlx::query(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, \
             is_active, date_joined) VALUES ('!unusable', 0, ?, '', '', ?, 1, 1, NOW(6))",
        )
        .bind(n)
        .bind(format!("{n}@example.com"))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO auth_userprofile (name, meta, courseware, language, location, user_id) \
             SELECT 'Aspects test', '', 'course.xml', '', '', id FROM auth_user WHERE username = ?",
        )
        .bind(n)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO oauth2_provider_application (client_id, redirect_uris, client_type, authorization_grant_type, \
             client_secret, name, user_id, skip_authorization, created, updated, algorithm) \
             SELECT ?, 'https://a.example/callback https://b.example/callback', 'confidential', \
             'authorization-code', 'plain-client-secret', 'superset-sso', id, 1, NOW(6), NOW(6), '' \
             FROM auth_user WHERE username = ?",
        )
        .bind(n)
        .bind(n)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO oauth_dispatch_applicationaccess (scopes, filters, application_id) \
             SELECT 'user_id,superset-sso,superset', NULL, id FROM oauth2_provider_application WHERE client_id = ?",
        )
        .bind(n)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO waffle_flag (name, everyone, percent, testing, superusers, staff, authenticated, languages, \
             rollout, note, created, modified) VALUES (?, NULL, NULL, 0, 0, 1, 0, '', 0, 'written by SQL', NOW(6), NOW(6))",
        )
        .bind(format!("{n}.flag"))
        .execute(&pool)
        .await
        .unwrap();
    });
    let read = django(
        r#"
import json, os
from django.contrib.auth.models import User
from oauth2_provider.models import get_application_model
from waffle import get_waffle_flag_model
n = os.environ["ASPECTS_TEST_NAME"]
user = User.objects.get(username=n)
app = get_application_model().objects.get(client_id=n)
flag = get_waffle_flag_model().objects.get(name=n + ".flag")
print(json.dumps({
    "user": {
        "email": user.email,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "has_usable_password": user.has_usable_password(),
        "profile_name": user.profile.name,
        "profile_courseware": user.profile.courseware,
    },
    "application": {
        "name": app.name,
        "owner": app.user.username,
        "client_type": app.client_type,
        "grant_type": app.authorization_grant_type,
        "client_secret": app.client_secret,
        "redirect_uri_allowed": app.redirect_uri_allowed("https://b.example/callback"),
        "other_redirect_allowed": app.redirect_uri_allowed("https://c.example/callback"),
        "skip_authorization": app.skip_authorization,
        "scopes": app.access.scopes,
        "filters": app.access.filters,
    },
    "flag": {
        "note": flag.note,
        "everyone": flag.everyone,
        "active_for_staff_user": flag.is_active_for_user(user),
    },
}, indent=None))
"#,
        &[("ASPECTS_TEST_NAME", n)],
    );
    let read = serde_json::to_string_pretty(&read).unwrap().replace(n, "[NAME]");
    insta::assert_snapshot!("lms_rows_read_by_django", read);
}
