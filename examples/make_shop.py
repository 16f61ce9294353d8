"""Regenerate shop.db, the README's example database, deterministically."""
import os
import random
import sqlite3

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "shop.db")

random.seed(7)
if os.path.exists(PATH):
    os.remove(PATH)
c = sqlite3.connect(PATH)
c.executescript('''
PRAGMA page_size = 4096;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, country TEXT, joined DATE);
CREATE TABLE products(sku TEXT PRIMARY KEY, title TEXT NOT NULL, price REAL NOT NULL, stock INTEGER DEFAULT 0) WITHOUT ROWID;
CREATE TABLE orders(id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER NOT NULL REFERENCES customers(id), placed_at TEXT NOT NULL, total REAL);
CREATE TABLE order_items(order_id INTEGER NOT NULL REFERENCES orders(id), sku TEXT NOT NULL, qty INTEGER NOT NULL, PRIMARY KEY(order_id, sku));
CREATE TABLE audit(at TEXT DEFAULT CURRENT_TIMESTAMP, what TEXT);
CREATE INDEX orders_by_customer ON orders(customer_id);
CREATE INDEX customers_by_country ON customers(country) WHERE country IS NOT NULL;
CREATE VIEW order_totals AS SELECT o.id, c.name, sum(i.qty * p.price) AS total FROM orders o JOIN customers c ON c.id = o.customer_id JOIN order_items i ON i.order_id = o.id JOIN products p ON p.sku = i.sku GROUP BY o.id;
CREATE TRIGGER orders_audit AFTER INSERT ON orders BEGIN INSERT INTO audit(what) VALUES('order ' || NEW.id); END;
''')
first = ['Ada', 'Linus', 'Grace', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Niklaus', 'Zoë', 'José', 'Łukasz', 'Søren']
last = ['Lovelace', 'Torvalds', 'Hopper', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Hamilton', 'Wirth', 'Müller', 'García']
countries = ['NL', 'DE', 'FR', 'US', 'JP', 'BR', None]
for i in range(1, 1001):
    n = f"{random.choice(first)} {random.choice(last)}"
    c.execute("INSERT INTO customers VALUES(?,?,?,?,?)",
              (i, n, f"{n.split()[0].lower()}.{i}@example.com", random.choice(countries),
               f"2024-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}"))
words = ['lamp', 'chair', 'desk', 'mug', 'pen', 'notebook', 'cable', 'monitor', 'keyboard', 'plant']
for i in range(200):
    c.execute("INSERT INTO products VALUES(?,?,?,?)",
              (f"SKU-{i:04d}", f"{random.choice(words).title()} {i}", round(random.uniform(1, 500), 2), random.randint(0, 100)))
for i in range(1, 3001):
    c.execute("INSERT INTO orders(customer_id, placed_at, total) VALUES(?,?,?)",
              (random.randint(1, 1000),
               f"2025-{random.randint(1, 12):02d}-{random.randint(1, 28):02d}T{random.randint(0, 23):02d}:00:00Z", None))
    for sku in random.sample(range(200), random.randint(1, 4)):
        c.execute("INSERT INTO order_items VALUES(?,?,?)", (i, f"SKU-{sku:04d}", random.randint(1, 5)))
c.execute("DELETE FROM orders WHERE id > 2990")
c.execute("DELETE FROM order_items WHERE order_id > 2990")
c.execute("PRAGMA user_version = 3")
c.commit()
c.execute("ANALYZE")
c.commit()
c.execute("VACUUM")
c.close()
