-- Applied by scripts/migrate.sh inside one transaction with its
-- schema_migrations row: no BEGIN/COMMIT here.
CREATE TABLE notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Notes are listed per user, newest first.
CREATE INDEX notes_user_id_created_at_idx ON notes (user_id, created_at DESC);
