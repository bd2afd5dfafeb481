-- Applied by scripts/migrate.sh inside one transaction with its
-- schema_migrations row: no BEGIN/COMMIT here.
CREATE TABLE users (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
