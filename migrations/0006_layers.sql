-- Layers: named, versioned zips that functions mount under /opt. A layer's version
-- numbers are never reused, even after every version was deleted, so `layers` keeps the
-- last number given for as long as the name was ever used.
CREATE TABLE layers (
    account_id TEXT NOT NULL,
    layer_name TEXT NOT NULL,
    last_version BIGINT NOT NULL,
    PRIMARY KEY (account_id, layer_name)
);

CREATE TABLE layer_versions (
    account_id TEXT NOT NULL,
    layer_name TEXT NOT NULL,
    version BIGINT NOT NULL,
    description TEXT NOT NULL,
    license_info TEXT,
    -- JSON arrays of strings.
    compatible_runtimes TEXT NOT NULL,
    compatible_architectures TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    code_size BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, layer_name, version)
);

-- Whether a package is some layer version's, for the code download.
CREATE INDEX layer_versions_by_code ON layer_versions (code_sha256);
