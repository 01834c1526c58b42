//! Which server this is, learnt once at connect time from `VERSION()`: MariaDB and MySQL differ
//! in where roles live, how a stored password is written and what an account can hold, and
//! MySQL 8 grew its features across minor releases. Statement builders take a [`Flavour`], so
//! tests can ask for MySQL 8's statements without a MySQL server.

/// The server family and its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flavour {
    pub mariadb: bool,
    /// `[major, minor, patch]`.
    pub version: [u32; 3],
}

impl Flavour {
    /// From `SELECT VERSION()`: `8.4.3`, `8.0.36-0ubuntu0.22.04.1`, `10.11.6-MariaDB-0+deb12u1`.
    pub fn parse(version: &str) -> Flavour {
        let mut numbers = version.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse().unwrap_or(0));
        let mut v = [0; 3];
        for slot in &mut v {
            *slot = numbers.next().unwrap_or(0);
        }
        Flavour { mariadb: version.contains("MariaDB"), version: v }
    }

    fn mysql_at_least(&self, version: [u32; 3]) -> bool {
        !self.mariadb && self.version >= version
    }

    /// MySQL 8's role tables (`mysql.role_edges`, `mysql.default_roles`) and dynamic
    /// privileges (`mysql.global_grants`).
    pub fn mysql8(&self) -> bool {
        self.mysql_at_least([8, 0, 0])
    }

    /// `RETAIN CURRENT PASSWORD` / `DISCARD OLD PASSWORD` and `mysql.user.User_attributes`
    /// (MySQL 8.0.14).
    pub fn dual_passwords(&self) -> bool {
        self.mysql_at_least([8, 0, 14])
    }

    /// Partial revokes, kept as `Restrictions` in `User_attributes` (MySQL 8.0.16).
    pub fn partial_revokes(&self) -> bool {
        self.mysql_at_least([8, 0, 16])
    }

    /// `IDENTIFIED WITH ... AS 0x...` (MySQL 8.0.17, WL#12803): a stored form with arbitrary
    /// bytes in its salt travels as a hex literal, never through string escaping.
    pub fn hex_auth_strings(&self) -> bool {
        self.mysql_at_least([8, 0, 17])
    }
}

#[cfg(test)]
pub(crate) const MYSQL_84: Flavour = Flavour { mariadb: false, version: [8, 4, 3] };
#[cfg(test)]
pub(crate) const MARIADB_1011: Flavour = Flavour { mariadb: true, version: [10, 11, 6] };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_their_suffixes() {
        assert_eq!(Flavour::parse("8.4.3"), MYSQL_84);
        assert_eq!(Flavour::parse("10.11.6-MariaDB-0+deb12u1"), MARIADB_1011);
        let ubuntu = Flavour::parse("8.0.36-0ubuntu0.22.04.1");
        assert_eq!(ubuntu, Flavour { mariadb: false, version: [8, 0, 36] });
        assert!(ubuntu.dual_passwords() && ubuntu.partial_revokes() && ubuntu.hex_auth_strings());
        let old = Flavour::parse("8.0.13");
        assert!(old.mysql8() && !old.dual_passwords() && !old.hex_auth_strings());
        assert!(!Flavour::parse("5.7.44").mysql8());
        // MariaDB 11 is not MySQL 11.
        let maria = Flavour::parse("11.4.2-MariaDB");
        assert!(!maria.mysql8() && !maria.dual_passwords());
    }
}
