-- The schema of each dataset as it evolved (policy.new_columns: add): each version lists the
-- columns added beyond the contract so far, the change, and the file that brought it. The
-- contract's YAML is never rewritten; `elt contract show --effective` reads this.
CREATE TABLE elt.schema_versions (
    dataset text NOT NULL,
    version integer NOT NULL,
    added jsonb NOT NULL,  -- [{"name", "type", "source_name"}], every column added so far
    change text NOT NULL,  -- e.g. "+coupon text"
    file text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, version)
);
