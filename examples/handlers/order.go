package exhandlers

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tasker-go/tasker/handlers"
)

// Order fulfillment (README "Order fulfillment"): validate_order → reserve_inventory →
// process_payment → ship_order against a simulated catalog, warehouse, gateway and carrier.

type catalogProduct struct {
	name     string
	stock    int64
	category string
	location string
}

// orderCatalog is the simulated product catalog and warehouse stock.
var orderCatalog = map[string]catalogProduct{
	"WIDGET-001": {"Premium Widget A", 100, "widgets", "WH-EAST-A1"},
	"WIDGET-002": {"Deluxe Widget B", 50, "widgets", "WH-WEST-B2"},
	"GADGET-002": {"Standard Gadget C", 200, "gadgets", "WH-CENTRAL-C3"},
}

func validationFailure(message, code string, ctx map[string]any) handlers.Result {
	return fail(message, errTypeValidation, code, false, ctx)
}

func validateOrder(_ context.Context, step *handlers.StepContext) handlers.Result {
	customer, ok := inputValue(step, "customer")
	if !ok {
		return validationFailure("Customer information is required", "MISSING_CUSTOMER_INFO", map[string]any{"field": "customer"})
	}
	customerID, ok := asInt64(field(customer, "id"))
	if !ok {
		return validationFailure("Customer ID is required", "MISSING_CUSTOMER_ID", nil)
	}
	if _, ok := asString(field(customer, "email")); !ok {
		return validationFailure("Customer email is required", "MISSING_CUSTOMER_EMAIL", nil)
	}
	rawItems, ok := inputValue(step, "items")
	if !ok {
		return validationFailure("Order items are required", "MISSING_ORDER_ITEMS", nil)
	}
	if rawItems == nil {
		return validationFailure("Order items must be an array", "INVALID_ORDER_ITEMS", nil)
	}
	items, ok := rawItems.([]any)
	if !ok {
		return validationFailure("Order items are required", "MISSING_ORDER_ITEMS", nil)
	}
	if len(items) == 0 {
		return validationFailure("Order items cannot be empty", "EMPTY_ORDER_ITEMS", nil)
	}

	validated := make([]map[string]any, 0, len(items))
	total := 0.0
	for i, item := range items {
		invalid := func(what string) handlers.Result {
			return validationFailure(fmt.Sprintf("Invalid order item at position %d: missing %s", i+1, what),
				"INVALID_ORDER_ITEM", map[string]any{"item_index": i})
		}
		sku, ok := asString(field(item, "sku"))
		if !ok {
			return invalid("sku")
		}
		qty, ok := asInt64(field(item, "quantity"))
		if !ok {
			return invalid("quantity")
		}
		if qty <= 0 {
			return validationFailure(fmt.Sprintf("Invalid quantity %d for product %s", qty, sku), "INVALID_QUANTITY",
				map[string]any{"sku": sku, "quantity": qty})
		}
		price, ok := asFloat64(field(item, "price"))
		if !ok {
			return invalid("price")
		}
		if price < 0 {
			return validationFailure(fmt.Sprintf("Invalid price %v for product %s", price, sku), "INVALID_PRICE",
				map[string]any{"sku": sku, "price": price})
		}
		product, ok := orderCatalog[sku]
		if !ok {
			return validationFailure(fmt.Sprintf("Product %s not found", sku), "PRODUCT_NOT_FOUND", map[string]any{"sku": sku})
		}
		lineTotal := price * float64(qty)
		total += lineTotal
		validated = append(validated, map[string]any{
			"sku":             sku,
			"product_name":    product.name,
			"quantity":        qty,
			"unit_price":      price,
			"line_total":      lineTotal,
			"available_stock": product.stock,
			"category":        product.category,
		})
	}
	if limit := configFloat(step, "max_order_total", 50000); total > limit {
		return validationFailure(fmt.Sprintf("Order total $%.2f exceeds maximum allowed value", total), "ORDER_TOTAL_TOO_HIGH",
			map[string]any{"total_amount": total, "max_allowed": limit})
	}
	return handlers.Success(map[string]any{
		"customer_validated": true,
		"customer_id":        customerID,
		"validated_items":    validated,
		"order_total":        total,
		"validation_status":  "complete",
		"validated_at":       rfc3339(now()),
	}, map[string]any{"operation": "validate_order", "item_count": len(validated)})
}

func reserveInventory(_ context.Context, step *handlers.StepContext) handlers.Result {
	order, ok := dependencyObject(step, "validate_order")
	if !ok {
		return fail("validate_order step results not found", errTypeDependency, "MISSING_DEPENDENCY_RESULTS", true,
			map[string]any{"required_step": "validate_order"})
	}
	items, ok := order["validated_items"].([]any)
	if !ok {
		return validationFailure("No validated items found from validate_order step", "NO_VALIDATED_ITEMS", nil)
	}
	t := now()
	reservationID := fmt.Sprintf("RES-%d-%X", t.Unix(), stepHash(step, "reservation")&0xFFFF)
	details := make([]map[string]any, 0, len(items))
	totalValue := 0.0
	for _, item := range items {
		sku, ok := asString(field(item, "sku"))
		if !ok {
			sku = "unknown"
		}
		qty, _ := asInt64(field(item, "quantity"))
		unitPrice, _ := asFloat64(field(item, "unit_price"))
		lineTotal, _ := asFloat64(field(item, "line_total"))
		name, ok := asString(field(item, "product_name"))
		if !ok {
			name = "Unknown"
		}
		product, known := orderCatalog[sku]
		var reason string
		switch {
		case !known:
			reason = fmt.Sprintf("Product %s not found in inventory system", sku)
		case product.stock < qty:
			reason = fmt.Sprintf("Available: %d, Requested: %d", product.stock, qty)
		}
		if reason != "" {
			return fail(fmt.Sprintf("Insufficient stock for product %s. %s", sku, reason), errTypeInventory, "INSUFFICIENT_STOCK", true,
				map[string]any{"sku": sku, "requested_quantity": qty})
		}
		totalValue += lineTotal
		details = append(details, map[string]any{
			"sku":                   sku,
			"product_name":          name,
			"quantity_requested":    qty,
			"quantity_reserved":     qty,
			"unit_price":            unitPrice,
			"line_total":            lineTotal,
			"stock_location":        product.location,
			"reservation_reference": reservationID + "-" + sku,
		})
	}
	hold := time.Duration(configInt(step, "reservation_minutes", 15)) * time.Minute
	return handlers.Success(map[string]any{
		"reservation_id":       reservationID,
		"items_reserved":       len(details),
		"reservation_status":   "confirmed",
		"total_reserved_value": totalValue,
		"expires_at":           rfc3339(t.Add(hold)),
		"reserved_at":          rfc3339(t),
		"reservation_details":  details,
	}, map[string]any{"operation": "reserve_inventory", "items_count": len(details)})
}

func processPayment(_ context.Context, step *handlers.StepContext) handlers.Result {
	order, ok := dependencyObject(step, "validate_order")
	if !ok {
		return fail("validate_order step results not found", errTypeDependency, "MISSING_VALIDATION_RESULTS", true, nil)
	}
	if _, ok := dependencyObject(step, "reserve_inventory"); !ok {
		return fail("reserve_inventory step results not found", errTypeDependency, "MISSING_RESERVATION_RESULTS", true, nil)
	}
	payment, ok := inputValue(step, "payment")
	if !ok {
		return validationFailure("Payment information is required", "MISSING_PAYMENT_INFO", nil)
	}
	method, ok := asString(field(payment, "method"))
	if !ok {
		return validationFailure("Payment method is required", "MISSING_PAYMENT_METHOD", nil)
	}
	if _, ok := asString(field(payment, "token")); !ok {
		return validationFailure("Payment token is required", "MISSING_PAYMENT_TOKEN", nil)
	}
	amount, _ := asFloat64(order["order_total"])
	t := now()
	paymentID := fmt.Sprintf("PAY-%d-%X", t.Unix(), stepHash(step, "payment")&0xFFFFFF)
	transactionID := fmt.Sprintf("TXN-%X", uint32(stepHash(step, "transaction")))
	fee := math.Round(amount*configFloat(step, "gateway_fee_rate", 0.029)*100) / 100
	processingMs := 50 + stepHash(step, "processing_time")%200
	return handlers.Success(map[string]any{
		"payment_processed":   true,
		"payment_id":          paymentID,
		"transaction_id":      transactionID,
		"amount_charged":      amount,
		"payment_method_used": method,
		"gateway_response": map[string]any{
			"status":             "succeeded",
			"processing_time_ms": processingMs,
			"gateway_fee":        fee,
			"reference":          fmt.Sprintf("%s-%d", paymentID, t.Unix()),
		},
		"processed_at":   rfc3339(t),
		"payment_status": "completed",
	}, map[string]any{
		"operation":       "process_payment",
		"execution_hints": map[string]any{"gateway_response_time_ms": processingMs, "gateway_fee_amount": fee},
	})
}

// shippingService is a carrier offer: name, service, base cost and business days to delivery.
type shippingService struct {
	carrier, service string
	base             float64
	businessDays     int
}

func serviceFor(method string) shippingService {
	switch method {
	case "express":
		return shippingService{"FedEx", "FedEx Express", 15, 2}
	case "overnight":
		return shippingService{"FedEx", "FedEx Overnight", 25, 1}
	}
	return shippingService{"UPS", "UPS Ground", 8.99, 5}
}

// shippingCost keeps tasker-core's operator-precedence quirk: round(base + weight_cost·100)/100.
func shippingCost(base float64, itemEntries int) float64 {
	weight := float64(itemEntries) * 0.5
	weightCost := 0.0
	if weight > 1 {
		weightCost = (weight - 1) * 2.50
	}
	return math.Round(base+weightCost*100) / 100
}

// addBusinessDays returns the date n weekdays (Mon–Fri) after day.
func addBusinessDays(day time.Time, n int) time.Time {
	for added := 0; added < n; {
		day = day.AddDate(0, 0, 1)
		if wd := day.Weekday(); wd != time.Saturday && wd != time.Sunday {
			added++
		}
	}
	return day
}

func shipOrder(_ context.Context, step *handlers.StepContext) handlers.Result {
	var order map[string]any
	for _, dep := range []string{"validate_order", "reserve_inventory", "process_payment"} {
		obj, ok := dependencyObject(step, dep)
		if !ok {
			return fail(dep+" step results not found", errTypeDependency, "MISSING_DEPENDENCY", true,
				map[string]any{"required_step": dep})
		}
		if dep == "validate_order" {
			order = obj
		}
	}
	shipping, ok := inputValue(step, "shipping")
	if !ok {
		return validationFailure("Shipping information is required", "MISSING_SHIPPING_INFO", nil)
	}
	if m, isObj := shipping.(map[string]any); !isObj || !hasKey(m, "address") {
		return validationFailure("Shipping address is required", "MISSING_SHIPPING_ADDRESS", nil)
	}
	method, ok := asString(field(shipping, "method"))
	if !ok {
		method = "standard"
	}
	items, _ := order["validated_items"].([]any)
	svc := serviceFor(method)
	t := now()
	shipmentID := fmt.Sprintf("SHIP-%d-%X", t.Unix(), stepHash(step, "shipment")&0xFFFF)
	tracking := fmt.Sprintf("UPS%X", stepHash(step, "tracking")&0xFFFFFF)
	if svc.carrier == "FedEx" {
		tracking = fmt.Sprintf("1Z%X", uint32(stepHash(step, "tracking")))
	}
	return handlers.Success(map[string]any{
		"shipment_id":        shipmentID,
		"tracking_number":    tracking,
		"shipping_status":    "label_created",
		"estimated_delivery": addBusinessDays(t.UTC(), svc.businessDays).Format(time.DateOnly),
		"shipping_cost":      shippingCost(svc.base, len(items)),
		"carrier":            svc.carrier,
		"service_type":       svc.service,
		"label_url":          fmt.Sprintf("https://labels.%s.com/%s.pdf", strings.ToLower(svc.carrier), shipmentID),
		"processed_at":       rfc3339(t),
	}, map[string]any{"operation": "ship_order"})
}

func hasKey(m map[string]any, key string) bool {
	_, ok := m[key]
	return ok
}

func orderHandlers() []entry {
	return []entry{
		{"order_fulfillment.validate_order", handlers.HandlerFunc(validateOrder)},
		{"order_fulfillment.reserve_inventory", handlers.HandlerFunc(reserveInventory)},
		{"order_fulfillment.process_payment", handlers.HandlerFunc(processPayment)},
		{"order_fulfillment.ship_order", handlers.HandlerFunc(shipOrder)},
	}
}
