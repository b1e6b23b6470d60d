-- The changelog file read from inside a release's image (`[images] changelog_file`):
-- `changelog_file` holds it as JSON (path, format, version, date, sections, text,
-- truncated, size, note), NULL when the image has none. `changelog_file_read_at` is
-- when the read finished (NULL: not read yet); `changelog_file_attempts` counts failed
-- reads, which stop after a few. Written by the changelog reader that runs beside the
-- watcher; the label/annotation `changelog` is left as it is.
ALTER TABLE releases ADD COLUMN changelog_file TEXT;
ALTER TABLE releases ADD COLUMN changelog_file_read_at BIGINT;
ALTER TABLE releases ADD COLUMN changelog_file_attempts BIGINT NOT NULL DEFAULT 0;
-- Releases recorded before this version are not read: their images may be long gone.
UPDATE releases SET changelog_file_read_at = detected_at;
