-- The notifier keeps its place in the audit trail in `settings` (`notify_cursor`): a
-- loop write like the others, so an old leader that wakes up must not move it either.
-- Unfenced connections (the API's fleet mode, the fleet id at start) are not affected.
CREATE TRIGGER fence_settings BEFORE INSERT OR UPDATE OR DELETE ON settings
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_fence();
