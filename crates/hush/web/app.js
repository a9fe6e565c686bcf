// hush web page (placeholder)
