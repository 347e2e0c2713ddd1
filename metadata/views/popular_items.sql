-- Most popular items (lab Task 1.3): per purchased product and currency, the units sold, the
-- revenue (SUM of price x quantity, NUMERIC) and the orders (purchases) that contain it, ranked
-- within the currency by units (units_rank) and by revenue (revenue_rank); 1 is the top and ties
-- share a rank. product_name and category are the greatest value seen for the product; a missing
-- category or currency reads '(not set)'.
SELECT
  product_id,
  MAX(product_name) AS product_name,
  COALESCE(MAX(category), '(not set)') AS category,
  COALESCE(currency, '(not set)') AS currency,
  SUM(quantity) AS units_sold,
  SUM(line_amount) AS revenue,
  COUNT(DISTINCT CONCAT(visit_id, '/', CAST(event_index AS STRING))) AS orders,
  RANK() OVER (PARTITION BY currency ORDER BY SUM(quantity) DESC) AS units_rank,
  RANK() OVER (PARTITION BY currency ORDER BY SUM(line_amount) DESC) AS revenue_rank
FROM `{project}.{dataset}.purchase_items_unique`
GROUP BY product_id, currency
