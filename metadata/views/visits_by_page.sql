-- Visits by page (lab Task 1.3): per page path, the visits that viewed it and its page views.
-- A visit counts once per page however often it viewed it (distinct visit_id: session_id repeats
-- across visits), so visits <= page_views. page_path is the URL's path without host or query.
SELECT
  page_path,
  COUNT(DISTINCT visit_id) AS visits,
  COUNT(*) AS page_views
FROM `{project}.{dataset}.page_views_unique`
GROUP BY page_path
