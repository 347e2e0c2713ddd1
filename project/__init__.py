"""The whole project: every area's resources declared from one settings file, planned, applied
and verified in dependency order through one engine, and rehearsed end to end on fakes of Google
Cloud before anyone owns a project."""
