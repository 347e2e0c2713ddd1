-- Sales by category (lab Task 1.3): per product category and currency, the revenue (SUM of
-- price x quantity over purchase items, NUMERIC, so exact), the units sold and the orders
-- (purchases) with at least one item of the category. Amounts in different currencies are never
-- added up; a missing category or currency reads '(not set)'.
SELECT
  COALESCE(category, '(not set)') AS category,
  COALESCE(currency, '(not set)') AS currency,
  SUM(line_amount) AS revenue,
  SUM(quantity) AS units_sold,
  COUNT(DISTINCT CONCAT(visit_id, '/', CAST(event_index AS STRING))) AS orders
FROM `{project}.{dataset}.purchase_items_unique`
GROUP BY category, currency
