-- Page views per minute (lab Task 3): page views per minute (UTC, truncated) and page path, for
-- the realtime pages. Sum page_views over page_path for the site's total per minute, and filter
-- on minute for a window, e.g. WHERE minute >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 15
-- MINUTE). Minutes without page views have no row.
SELECT
  TIMESTAMP_TRUNC(event_timestamp, MINUTE) AS minute,
  page_path,
  COUNT(*) AS page_views
FROM `{project}.{dataset}.page_views_unique`
GROUP BY minute, page_path
