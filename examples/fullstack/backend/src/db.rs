//! Where the database is: `DATABASE_URL` (a libpq-style URL or key=value string), else the
//! libpq variables PGHOST (a host or a unix socket directory), PGPORT, PGUSER, PGDATABASE,
//! PGPASSWORD, as psql and scripts/migrate.sh read them. Pure: the caller passes the variables.

use tokio_postgres::Config;

/// `None` when nothing names a database: the DB routes then answer 503 saying so.
pub fn config_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<Config>, String> {
    if let Some(url) = get("DATABASE_URL") {
        return url.parse::<Config>().map(Some).map_err(|e| format!("DATABASE_URL: {e}"));
    }
    let Some(host) = get("PGHOST") else { return Ok(None) };
    let mut config = Config::new();
    config.host(&host);
    if let Some(port) = get("PGPORT") {
        config.port(port.parse().map_err(|_| format!("PGPORT: not a port number: {port:?}"))?);
    }
    config.user(&get("PGUSER").unwrap_or_else(|| "postgres".into()));
    config.dbname(&get("PGDATABASE").unwrap_or_else(|| "postgres".into()));
    if let Some(password) = get("PGPASSWORD") {
        config.password(password);
    }
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn nothing_set_is_no_database() {
        assert!(config_from_env(env(&[])).unwrap().is_none());
    }

    #[test]
    fn libpq_variables() {
        let c = config_from_env(env(&[("PGHOST", "/tmp/pg"), ("PGPORT", "5433"), ("PGUSER", "u")])).unwrap().unwrap();
        assert_eq!(c.get_ports(), &[5433]);
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_dbname(), Some("postgres"));
        assert!(config_from_env(env(&[("PGHOST", "h"), ("PGPORT", "x")])).unwrap_err().contains("PGPORT"));
    }

    #[test]
    fn url_wins() {
        let c = config_from_env(env(&[("DATABASE_URL", "postgresql://a@db:6000/app"), ("PGHOST", "x")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.get_dbname(), Some("app"));
        assert_eq!(c.get_ports(), &[6000]);
    }
}
