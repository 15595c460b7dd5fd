"""Cross-cutting machinery every app uses: errors, request ids, logging, audit, jobs, scoped admin, calendar."""
