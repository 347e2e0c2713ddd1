-- Visits by device type (lab Task 1.3): per device type as reported by the site (desktop, mobile
-- or tablet; '(not set)' when missing), the visits (distinct visit_id), how many of them bought
-- something, and their page views.
SELECT
  COALESCE(device_type, '(not set)') AS device_type,
  COUNT(*) AS visits,
  COUNTIF(purchase_count > 0) AS visits_with_purchase,
  SUM(page_view_count) AS page_views
FROM `{project}.{dataset}.visits_unique`
GROUP BY device_type
